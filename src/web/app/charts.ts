/**
 * Rolling time-series charts (uPlot) for one machine: the last few minutes of samples the
 * page takes from the daemon while the machine's page is open.
 */
import uPlot from 'uplot';
import { h } from './dom.js';

const WINDOW_S = 300;

export interface Series {
  label: string;
  color: string;
}

export class RollingChart {
  private readonly times: number[] = [];
  private readonly values: number[][];
  private readonly plot: uPlot;
  readonly el: HTMLElement;

  constructor(title: string, series: Series[], unit: string) {
    this.values = series.map(() => []);
    this.el = h('div', { class: 'panel chart', role: 'img', 'aria-label': `${title} over the last ${WINDOW_S / 60} minutes` });
    const width = () => Math.max(220, Math.min(720, (this.el.clientWidth || 320) - 26));
    this.plot = new uPlot(
      {
        title,
        width: width(),
        height: 150,
        scales: { x: { time: true } },
        axes: [
          { stroke: '#8a96a3', grid: { stroke: '#2a333d' } },
          { stroke: '#8a96a3', grid: { stroke: '#2a333d' }, values: (_u, ticks) => ticks.map((v) => `${fmt(v)}${unit}`) },
        ],
        series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 1.5 }))],
        legend: { show: true },
      },
      [[], ...series.map(() => [])],
      this.el,
    );
    new ResizeObserver(() => this.plot.setSize({ width: width(), height: 150 })).observe(this.el);
  }

  push(timeMs: number, ...vals: number[]): void {
    this.times.push(timeMs / 1000);
    vals.forEach((v, i) => this.values[i]!.push(v));
    while (this.times.length > 0 && this.times[0]! < timeMs / 1000 - WINDOW_S) {
      this.times.shift();
      for (const v of this.values) v.shift();
    }
    this.plot.setData([this.times, ...this.values]);
  }
}

function fmt(v: number): string {
  if (Math.abs(v) >= 1e9) return `${(v / 1e9).toFixed(1)}G`;
  if (Math.abs(v) >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (Math.abs(v) >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

/** Turns two cumulative counter samples into a per-second rate (0 when the counter went back). */
export function rate(prev: number | undefined, cur: number | undefined, dtMs: number): number {
  if (prev === undefined || cur === undefined || dtMs <= 0 || cur < prev) return 0;
  return ((cur - prev) * 1000) / dtMs;
}
