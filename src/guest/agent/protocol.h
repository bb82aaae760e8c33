/* visor guest agent protocol, version 1. Mirrors src/guest/protocol.ts (the definition). */
#ifndef VISOR_PROTOCOL_H
#define VISOR_PROTOCOL_H

#define PROTOCOL_VERSION 1
#define AGENT_VSOCK_PORT 1024
#define HEADER_SIZE 9
#define MAX_BODY (1u << 20)
#define DATA_CHUNK (64u * 1024)
#define MAX_STRING (64u * 1024)
/* READY's MAC result when HELLO asked for none. */
#define HELLO_NO_MAC 0xffffffffu

/* host -> guest */
#define H_HELLO 0x01
#define H_EXEC 0x10
#define H_STDIN 0x11
#define H_SIGNAL 0x12
#define H_RESIZE 0x13
#define H_PROCS 0x14
#define H_WRITE_OPEN 0x20
#define H_WRITE_DATA 0x21
#define H_WRITE_END 0x22
#define H_READ 0x23
#define H_LIST 0x24
#define H_STAT 0x25
#define H_MKDIR 0x26
#define H_REMOVE 0x27
#define H_RENAME 0x28
#define H_WATCH 0x29
#define H_UNWATCH 0x2a

/* guest -> host */
#define G_READY 0x81
#define G_STARTED 0x90
#define G_STDOUT 0x91
#define G_STDERR 0x92
#define G_EXIT 0x93
#define G_PROC_LIST 0x94
#define G_OK 0xa0
#define G_ERROR 0xa1
#define G_ACK 0xa2
#define G_DATA 0xa3
#define G_ENTRIES 0xa4
#define G_STAT_RESULT 0xa5
#define G_WATCH_EVENT 0xa6

#define EXEC_PTY 1
#define EXEC_STDIN 2

#endif
