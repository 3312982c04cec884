/*
 * scp.h — a DICOM Storage SCP (C-ECHO and C-STORE), the network face of the
 * DCMTK shim (src/dicom/scp.cc).
 *
 * ctp_scp_start() binds a listening socket and starts one listener thread.
 * Each TCP connection gets its own thread, which negotiates the association
 * and then serves its DIMSE messages until the peer releases it, aborts it,
 * stays silent longer than the DIMSE timeout, or the SCP is freed. What to
 * accept and where instances go is decided by the caller's callbacks, which
 * run on those association threads (several at once: they must be
 * thread-safe).
 *
 * The life of one C-STORE:
 *
 *   C-STORE-RQ ─> on_store_begin(command UIDs) ── refuse ─> drain, answer
 *                      │ keep / drop                          the status
 *                      v
 *   dataset streamed, bit for bit, into a temporary Part-10 file under
 *   opts.tmp_dir (fsynced; or discarded for "drop")
 *                      v
 *   file parsed and checked ── unreadable ─> 0xC000; inconsistent ─> 0xA900
 *                      v
 *   on_store(instance) ─> its status is the C-STORE-RSP status
 *
 * on_store receives the temporary file's path; to keep the instance it
 * renames the file away (and makes that durable) before returning success.
 * Whatever is left at the temporary path afterwards is removed.
 *
 * Timeouts are always set: the A-ASSOCIATE-RQ must arrive within the ACSE
 * timeout, and every later read or write must progress within the DIMSE
 * timeout, so a stalled peer holds its thread for a bounded time only.
 *
 * Identifiers passed to callbacks are the values the peer sent, not yet
 * validated: callers must validate them before building paths. Patient
 * attributes are never read here.
 *
 * Errors follow error.h. No C++ exception crosses this header.
 */
#ifndef CTPHASE_SCP_H
#define CTPHASE_SCP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* DIMSE status codes the callbacks answer with. */
#define CTP_DIMSE_SUCCESS 0x0000
#define CTP_DIMSE_SOP_CLASS_NOT_SUPPORTED 0x0122
#define CTP_DIMSE_OUT_OF_RESOURCES 0xA700
#define CTP_DIMSE_DATASET_MISMATCH 0xA900
#define CTP_DIMSE_CANNOT_UNDERSTAND 0xC000
/* Returned by on_store_begin only: read the dataset, discard it, and
 * answer success (non-CT objects under the "drop" policy). */
#define CTP_SCP_DROP 0x10000

/* Why an association is refused (on_associate's answer). */
typedef enum {
  CTP_SCP_ACCEPT = 0,
  CTP_SCP_REJECT_CALLED_AE,  /* called AE title is not ours */
  CTP_SCP_REJECT_CALLING_AE, /* calling AE title not on the allowlist */
  CTP_SCP_REJECT_PEER,       /* peer address not on the allowlist */
  CTP_SCP_REJECT_BUSY,       /* max_associations reached (transient) */
  CTP_SCP_REJECT_STOPPING    /* the service is shutting down (transient) */
} ctp_scp_verdict;

/* "called-ae", "calling-ae", "peer", "busy", "stopping" ("accept" for 0). */
const char *ctp_scp_verdict_str(int verdict);

/* One association, as the callbacks see it. */
typedef struct {
  uint64_t id;            /* unique in this process, from 1 */
  char calling_ae[17];
  char called_ae[17];
  char peer[64];          /* numeric address of the peer */
  int peer_port;
} ctp_scp_assoc;

/* What an association did, given to on_close. */
typedef struct {
  int verdict;            /* ctp_scp_verdict */
  const char *end;        /* "released", "aborted", "timeout", "rejected",
                             "error", "shutdown" */
  unsigned stores_ok, stores_failed, echoes;
  uint64_t bytes;         /* dataset bytes received */
  double seconds;         /* from accept to close */
} ctp_scp_assoc_stats;

/* A received instance, checked and written to a temporary file. */
typedef struct {
  const ctp_scp_assoc *assoc;
  const char *tmp_path;          /* the Part-10 file, fsynced */
  uint64_t bytes;                /* its size */
  const char *sop_class_uid;     /* from the dataset, trimmed */
  const char *sop_instance_uid;
  const char *study_instance_uid;  /* "" when absent */
  const char *series_instance_uid; /* "" when absent */
  const char *modality;          /* "" when absent */
  const char *transfer_syntax;   /* of the presentation context */
  double receive_seconds;        /* network receive of the dataset */
  double write_seconds;          /* of which fsync */
} ctp_scp_instance;

typedef struct {
  void *ud;
  /* Accept (CTP_SCP_ACCEPT) or refuse an association whose called AE
   * title already matched. May be NULL (accept all). */
  int (*on_associate)(void *ud, const ctp_scp_assoc *a);
  /* Before the dataset of a C-STORE is read: 0 to receive it, CTP_SCP_DROP
   * to discard it and answer success, or a failure status to discard it
   * and answer that status. May be NULL (receive all). */
  unsigned (*on_store_begin)(void *ud, const ctp_scp_assoc *a,
                             const char *sop_class_uid,
                             const char *sop_instance_uid);
  /* A checked instance; returns the C-STORE-RSP status. Required. */
  unsigned (*on_store)(void *ud, const ctp_scp_instance *inst);
  /* An association ended (also after a rejection). May be NULL. */
  void (*on_close)(void *ud, const ctp_scp_assoc *a,
                   const ctp_scp_assoc_stats *st);
  /* Diagnostics: level 0 debug, 1 info, 2 warn, 3 error; an event name and
   * one sentence (never patient data). a may be NULL. May be NULL. */
  void (*on_log)(void *ud, int level, const char *event,
                 const ctp_scp_assoc *a, const char *msg);
} ctp_scp_callbacks;

typedef struct {
  const char *bind_address;  /* IPv4 or IPv6 address; NULL or "0.0.0.0": all
                              * IPv4; "::": all, IPv4 peers included */
  int port;                  /* 0: any free port (see ctp_scp_port) */
  const char *ae_title;      /* our AE title; the called AE must match */
  int max_associations;      /* served at once; more are rejected */
  int acse_timeout;          /* seconds */
  int dimse_timeout;         /* seconds */
  int max_pdu;               /* max receive PDU, 4096..131072 */
  const char *const *sop_classes; /* accepted SOP classes; NULL: every */
  int nsop_classes;               /* storage class DCMTK knows, and echo */
  const char *tmp_dir;       /* where datasets are received */
} ctp_scp_opts;

typedef struct ctp_scp ctp_scp;

/* What ctp_scp_file_read() finds in a Part-10 file this SCP wrote. */
typedef struct {
  char sop_class_uid[65];
  char sop_instance_uid[65];
  char study_instance_uid[65];   /* "" when absent */
  char series_instance_uid[65];  /* "" when absent */
  char transfer_syntax[65];      /* from the file meta information */
  char source_ae[17];            /* SourceApplicationEntityTitle, or "" */
} ctp_scp_file_info;

/* Reads the UIDs of a received file again (start-up reconciliation of
 * files that have no database row). Pixel data is not read. CTP_EDICOM
 * when the file is not a readable Part-10 file. */
int ctp_scp_file_read(const char *path, ctp_scp_file_info *out);

/* Binds, listens and starts the listener thread. */
int ctp_scp_start(ctp_scp **out, const ctp_scp_opts *opts,
                  const ctp_scp_callbacks *cb);
/* The port actually bound (useful with port 0). */
int ctp_scp_port(const ctp_scp *s);
/* Associations in progress (negotiating or serving). */
int ctp_scp_active(const ctp_scp *s);
/* Stops accepting: the listening socket is closed; associations in
 * progress go on. Idempotent. */
void ctp_scp_stop(ctp_scp *s);
/* Stops, aborts the associations still in progress (their current
 * C-STORE is not answered), waits for their threads and frees. NULL ok. */
void ctp_scp_free(ctp_scp *s);

#ifdef __cplusplus
}
#endif
#endif
