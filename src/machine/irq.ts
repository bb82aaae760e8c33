/** Machine-level interrupt bits of mip (privileged spec §3.1.9), driven by devices. */
export const MIP_SSIP = 1 << 1;
export const MIP_MSIP = 1 << 3;
export const MIP_STIP = 1 << 5;
export const MIP_MTIP = 1 << 7;
export const MIP_SEIP = 1 << 9;
export const MIP_MEIP = 1 << 11;

/** What devices need of a hart: its hardware-driven mip inputs (Hart.setPending). */
export interface InterruptTarget {
  setPending(mask: number, level: boolean): void;
}
