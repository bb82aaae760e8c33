/** The ext4 writer: build a tree (tree.ts), size the image (planExt4Size), write it (writeExt4). */
export { dirNode, fileFromBytes } from './tree.js';
export type { Ext4DeviceNode, Ext4DirNode, Ext4FileNode, Ext4Meta, Ext4Node, Ext4Options, Ext4SpecialNode, Ext4Summary, Ext4SymlinkNode } from './tree.js';
export { planExt4Size } from './plan.js';
export { writeExt4 } from './writer.js';
