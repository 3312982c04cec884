/*
 * scu.h — sending DICOM files to a destination: a C-STORE SCU (DCMTK
 * behind the shim, src/dicom/scu.cc) or a local folder.
 *
 * A destination is written as text in the configuration:
 *
 *   "AE@host:port"   a Storage SCP (a PACS): AE title up to 16 characters,
 *                    host a name or an IPv4 address, port 1..65535
 *   "dir:/abs/path"  a folder: each file is copied in atomically
 *
 * ctp_scu_send_files() sends a list of files over ONE association. For
 * each distinct (SOP class, transfer syntax) of the files it proposes a
 * presentation context offering the file's own transfer syntax, then
 * explicit and implicit VR little endian. A file goes on a context
 * accepted with its own transfer syntax; else, when the file is
 * uncompressed (or DCMTK can decode it), it is re-encoded into the
 * accepted little-endian syntax. Connect, ACSE and DIMSE timeouts are
 * always set (a zero in the options means the defaults below), so a
 * silent peer cannot hold the calling thread for longer than those.
 *
 * Each file gets its own result: sent (C-STORE status success, or a
 * warning 0xB000/0xB006/0xB007, which the standard counts as stored), or
 * an error with a message that says what happened in words:
 *
 *   CTP_ENET    could not connect, or the association was lost
 *               ("connection refused", "timeout", "aborted by the peer")
 *   CTP_EDICOM  association rejected (result, source and reason in
 *               words), presentation context not accepted, or a C-STORE
 *               failure status (hex code and meaning, e.g.
 *               "0xA700 refused: out of resources")
 *   CTP_EIO, CTP_EFORMAT  the file could not be read
 *
 * ctp_scu_copy_files() gives the same per-file results for a folder
 * destination: each file is written to a temporary name in the folder,
 * fsynced, renamed to <basename>, then the folder is fsynced.
 *
 * Thread-safe: each call has its own association; DCMTK's process-wide
 * connection timeout is set to the same configured value by every call.
 * No C++ exception crosses this header.
 */
#ifndef CTPHASE_SCU_H
#define CTPHASE_SCU_H

#ifdef __cplusplus
extern "C" {
#endif

#define CTP_SCU_TIMEOUT_DEFAULT 30   /* seconds, for any timeout left 0 */
#define CTP_SCU_MAX_PDU_DEFAULT 65536

typedef enum { CTP_DEST_SCP = 1, CTP_DEST_DIR = 2 } ctp_dest_kind;

/* A parsed destination. */
typedef struct {
  int kind;            /* ctp_dest_kind */
  char ae_title[17];   /* SCP: the called AE title */
  char host[256];      /* SCP */
  int port;            /* SCP */
  char dir[1024];      /* DIR: absolute path */
} ctp_dest;

/* Parses "AE@host:port" or "dir:/path". CTP_EINVAL with a message that
 * says what is wrong and what the forms are. */
int ctp_dest_parse(const char *text, ctp_dest *out);

typedef struct {
  const char *calling_ae;  /* ours (NULL: "CTPHASE") */
  const char *called_ae;   /* the peer's */
  const char *host;
  int port;
  int connect_timeout;     /* seconds; 0: CTP_SCU_TIMEOUT_DEFAULT */
  int acse_timeout;        /* seconds to get the A-ASSOCIATE-AC / A-RELEASE-RP */
  int dimse_timeout;       /* seconds for each C-STORE-RSP (and PDU write) */
  int max_pdu;             /* largest PDU we receive; 0: default */
} ctp_scu_opts;

/* One file's outcome. */
typedef struct {
  int rc;              /* 0: stored; else a CTP_E* code */
  int status;          /* the C-STORE-RSP status, -1 when none came */
  char error[512];     /* "" when rc is 0 and status 0; else what happened */
  double seconds;      /* this file's C-STORE round trip (or copy) */
} ctp_scu_result;

/* Sends files[0..n) over one association; results[i] is files[i]'s.
 * Returns 0 when the association was negotiated (look at each result),
 * or the error that stopped all of them (each result then holds it too).
 * CTP_EINVAL for bad arguments. */
int ctp_scu_send_files(const ctp_scu_opts *o, const char *const *files, int n,
                       ctp_scu_result *results);

/* C-ECHO: 0 when the peer answers success. */
int ctp_scu_echo(const ctp_scu_opts *o);

/* Copies files[0..n) into dir (created if missing) atomically. Returns 0
 * when the folder is usable (look at each result), else the error that
 * stopped all of them. */
int ctp_scu_copy_files(const char *dir, const char *const *files, int n,
                       ctp_scu_result *results);

/* The meaning of a C-STORE status ("refused: out of resources"). */
const char *ctp_scu_status_str(int status);

#ifdef __cplusplus
}
#endif
#endif
