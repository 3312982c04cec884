/*
 * scu.cc — sending files to a Storage SCP (C-STORE SCU, C-ECHO) on
 * DCMTK's ASC/DIMSE layer, and copying them into a folder destination.
 *
 * See include/ctphase/scu.h for the contract. One call is one
 * association, on the calling thread, with nothing shared between calls
 * except DCMTK's process-wide connection timeout (an OFGlobal, set to the
 * configured value before each connect):
 *
 *   read each file's meta header ── distinct (SOP class, transfer syntax)
 *     -> one presentation context each: [own syntax, explicit LE, implicit LE]
 *   A-ASSOCIATE-RQ ── rejected ─> every file: "association rejected: ..."
 *   per file: load, pick the accepted context (own syntax, else re-encode
 *     into the accepted little endian), C-STORE, read the status
 *     ── network error ─> abort; this and the remaining files fail
 *   A-RELEASE
 *
 * We use the ASC layer rather than DcmSCU because it gives the reject
 * reason, the accepted transfer syntax per context and every timeout
 * explicitly. No exception leaves this file.
 */
#include "ctphase/scu.h"

#include "ctphase/error.h"
#include "ctphase/util.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dctk.h>
#include <dcmtk/dcmnet/assoc.h>
#include <dcmtk/dcmnet/dcmtrans.h>
#include <dcmtk/dcmnet/dimse.h>
#include <dcmtk/dcmnet/dul.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <new>
#include <string>
#include <vector>

namespace {

const char kImplementationClassUid[] = "1.2.826.0.1.3680043.10.1126.1";
const char kImplementationVersion[] = "CTPHASE_" CTPHASE_VERSION;
const int kMaxContexts = 128;

double now_s() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

void set_result(ctp_scu_result *r, int rc, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void set_result(ctp_scu_result *r, int rc, int status, const char *fmt, ...) {
  r->rc = rc;
  r->status = status;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->error, sizeof r->error, fmt, ap);
  va_end(ap);
}

/* What one file says about itself, from its meta header. */
struct FileInfo {
  std::string sop_class, sop_instance, xfer;
  int ctx = -1; /* index into contexts */
};

struct Context {
  std::string sop_class, xfer;
  T_ASC_PresentationContextID id;
};

int read_meta(const char *path, FileInfo *fi, ctp_scu_result *r) {
  DcmFileFormat ff;
  OFCondition c = ff.loadFile(path, EXS_Unknown, EGL_noChange, 256, ERM_metaOnly);
  if (c.bad()) {
    set_result(r, CTP_EIO, -1, "%s: cannot read: %s", path, c.text());
    return r->rc;
  }
  OFString cls, inst, ts;
  DcmMetaInfo *m = ff.getMetaInfo();
  m->findAndGetOFString(DCM_MediaStorageSOPClassUID, cls);
  m->findAndGetOFString(DCM_MediaStorageSOPInstanceUID, inst);
  m->findAndGetOFString(DCM_TransferSyntaxUID, ts);
  if (cls.empty() || inst.empty() || ts.empty()) {
    set_result(r, CTP_EFORMAT, -1,
               "%s: no SOP class, SOP instance or transfer syntax in the meta "
               "header (not a DICOM Part 10 file)", path);
    return r->rc;
  }
  fi->sop_class = cls.c_str();
  fi->sop_instance = inst.c_str();
  fi->xfer = ts.c_str();
  return 0;
}

const char *result_str(int v) {
  return v == ASC_RESULT_REJECTEDPERMANENT ? "rejected permanently"
         : v == ASC_RESULT_REJECTEDTRANSIENT ? "rejected transiently"
                                             : "rejected";
}

const char *source_str(int v) {
  switch (v) {
    case ASC_SOURCE_SERVICEUSER: return "by the peer (service user)";
    case ASC_SOURCE_SERVICEPROVIDER_ACSE_RELATED: return "by the peer's ACSE";
    case ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED:
      return "by the peer's presentation layer";
  }
  return "";
}

const char *reason_str(int v) {
  switch (v) {
    case ASC_REASON_SU_NOREASON: return "no reason given";
    case ASC_REASON_SU_APPCONTEXTNAMENOTSUPPORTED:
      return "application context name not supported";
    case ASC_REASON_SU_CALLINGAETITLENOTRECOGNIZED:
      return "calling AE title not recognized (our AE title is not configured "
             "at the peer)";
    case ASC_REASON_SU_CALLEDAETITLENOTRECOGNIZED:
      return "called AE title not recognized (check the destination's AE title)";
    case ASC_REASON_SP_ACSE_NOREASON: return "no reason given";
    case ASC_REASON_SP_ACSE_PROTOCOLVERSIONNOTSUPPORTED:
      return "protocol version not supported";
    case ASC_REASON_SP_PRES_TEMPORARYCONGESTION: return "temporary congestion";
    case ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED:
      return "local limit exceeded (too many associations at the peer)";
  }
  return "unknown reason";
}

/* Where the peer is, for messages. */
std::string peer_name(const ctp_scu_opts *o) {
  char b[400];
  snprintf(b, sizeof b, "%s@%s:%d", o->called_ae, o->host, o->port);
  return b;
}

int timeout_or_default(int t) { return t > 0 ? t : CTP_SCU_TIMEOUT_DEFAULT; }

/* An open association and what it needs to be torn down. */
struct Assoc {
  T_ASC_Network *net = NULL;
  T_ASC_Parameters *params = NULL;
  T_ASC_Association *assoc = NULL;
  bool open = false;

  ~Assoc() {
    if (assoc) {
      if (open) ASC_abortAssociation(assoc);
      ASC_destroyAssociation(&assoc); /* frees params too */
    } else if (params) {
      ASC_destroyAssociationParameters(&params);
    }
    if (net) ASC_dropNetwork(&net);
  }

  void release() {
    if (assoc && open) {
      if (ASC_releaseAssociation(assoc).bad()) ASC_abortAssociation(assoc);
      open = false;
    }
  }

  void abort() {
    if (assoc && open) ASC_abortAssociation(assoc);
    open = false;
  }
};

/* Negotiates an association proposing ctxs; fills their ids. On failure
 * returns the code with the message set (ctp_last_error). */
int associate(const ctp_scu_opts *o, std::vector<Context> &ctxs, Assoc &a) {
  int acse = timeout_or_default(o->acse_timeout);
  int dimse = timeout_or_default(o->dimse_timeout);
  int max_pdu = o->max_pdu > 0 ? o->max_pdu : CTP_SCU_MAX_PDU_DEFAULT;
  if (max_pdu < ASC_MINIMUMPDUSIZE) max_pdu = ASC_MINIMUMPDUSIZE;
  if (max_pdu > ASC_MAXIMUMPDUSIZE) max_pdu = ASC_MAXIMUMPDUSIZE;
  dcmConnectionTimeout.set(timeout_or_default(o->connect_timeout));
  dcmSocketSendTimeout.set(dimse);
  dcmSocketReceiveTimeout.set(dimse);
  OFCondition c = ASC_initializeNetwork(NET_REQUESTOR, 0, acse, &a.net);
  if (c.bad())
    return ctp_seterr(CTP_ENET, "cannot initialise the DICOM network: %s", c.text());
  c = ASC_createAssociationParameters(&a.params, max_pdu);
  if (c.bad()) return ctp_seterr(CTP_ENOMEM, "association parameters: %s", c.text());
  OFStandard::strlcpy(a.params->ourImplementationClassUID, kImplementationClassUid,
                      sizeof a.params->ourImplementationClassUID);
  OFStandard::strlcpy(a.params->ourImplementationVersionName, kImplementationVersion,
                      sizeof a.params->ourImplementationVersionName);
  ASC_setAPTitles(a.params, o->calling_ae ? o->calling_ae : "CTPHASE", o->called_ae,
                  NULL);
  char peer[300];
  snprintf(peer, sizeof peer, "%s:%d", o->host, o->port);
  ASC_setPresentationAddresses(a.params, "localhost", peer);
  T_ASC_PresentationContextID id = 1;
  for (Context &ctx : ctxs) {
    const char *ts[3];
    int nts = 0;
    ts[nts++] = ctx.xfer.c_str();
    if (ctx.xfer != UID_LittleEndianExplicitTransferSyntax)
      ts[nts++] = UID_LittleEndianExplicitTransferSyntax;
    if (ctx.xfer != UID_LittleEndianImplicitTransferSyntax)
      ts[nts++] = UID_LittleEndianImplicitTransferSyntax;
    ctx.id = id;
    c = ASC_addPresentationContext(a.params, id, ctx.sop_class.c_str(), ts, nts);
    if (c.bad())
      return ctp_seterr(CTP_EDICOM, "presentation context for %s: %s",
                        ctx.sop_class.c_str(), c.text());
    id = (T_ASC_PresentationContextID)(id + 2);
  }
  c = ASC_requestAssociation(a.net, a.params, &a.assoc);
  if (c == DUL_ASSOCIATIONREJECTED) {
    T_ASC_RejectParameters rej;
    ASC_getRejectParameters(a.params, &rej);
    return ctp_seterr(CTP_EDICOM, "association rejected by %s: %s %s: %s",
                      peer_name(o).c_str(), result_str(rej.result),
                      source_str(rej.source), reason_str(rej.reason));
  }
  if (c.bad()) {
    /* DCMTK's text names the cause: "Connection refused", a timeout, ... */
    std::string why = c.text();
    for (char &ch : why)
      if (ch == '\n') ch = ' ';
    return ctp_seterr(CTP_ENET, "cannot associate with %s: %s",
                      peer_name(o).c_str(), why.c_str());
  }
  a.open = true;
  return 0;
}

/* The accepted context (and its transfer syntax) to send fi on; -1 if
 * none. */
T_ASC_PresentationContextID pick_context(Assoc &a, const FileInfo &fi,
                                         std::string *ts_out) {
  T_ASC_PresentationContextID id = ASC_findAcceptedPresentationContextID(
      a.assoc, fi.sop_class.c_str(), fi.xfer.c_str());
  if (id) {
    *ts_out = fi.xfer;
    return id;
  }
  for (const char *ts : {UID_LittleEndianExplicitTransferSyntax,
                         UID_LittleEndianImplicitTransferSyntax}) {
    id = ASC_findAcceptedPresentationContextID(a.assoc, fi.sop_class.c_str(), ts);
    if (id) {
      *ts_out = ts;
      return id;
    }
  }
  return 0;
}

/* Sends one file; returns false when the association is lost. */
bool store_one(const ctp_scu_opts *o, Assoc &a, const char *path, const FileInfo &fi,
               ctp_scu_result *r) {
  double t0 = now_s();
  std::string ts;
  T_ASC_PresentationContextID id = pick_context(a, fi, &ts);
  if (!id) {
    set_result(r, CTP_EDICOM, -1,
               "presentation context not accepted by %s for SOP class %s (%s) "
               "with transfer syntax %s or explicit/implicit VR little endian: "
               "the destination does not store this kind of object",
               peer_name(o).c_str(), fi.sop_class.c_str(),
               dcmFindNameOfUID(fi.sop_class.c_str(), "unknown"), fi.xfer.c_str());
    return true;
  }
  DcmFileFormat ff;
  OFCondition c = ff.loadFile(path);
  if (c.bad()) {
    set_result(r, CTP_EIO, -1, "%s: cannot read: %s", path, c.text());
    return true;
  }
  DcmDataset *ds = ff.getDataset();
  if (ts != fi.xfer) {
    DcmXfer want(ts.c_str());
    if (ds->chooseRepresentation(want.getXfer(), NULL).bad() ||
        !ds->canWriteXfer(want.getXfer())) {
      set_result(r, CTP_EDICOM, -1,
                 "%s: the peer accepted SOP class %s only in %s, and the file "
                 "(%s) cannot be converted to it", path, fi.sop_class.c_str(),
                 ts.c_str(), fi.xfer.c_str());
      return true;
    }
  }
  T_DIMSE_C_StoreRQ req;
  memset(&req, 0, sizeof req);
  req.MessageID = a.assoc->nextMsgID++;
  OFStandard::strlcpy(req.AffectedSOPClassUID, fi.sop_class.c_str(),
                      sizeof req.AffectedSOPClassUID);
  OFStandard::strlcpy(req.AffectedSOPInstanceUID, fi.sop_instance.c_str(),
                      sizeof req.AffectedSOPInstanceUID);
  req.DataSetType = DIMSE_DATASET_PRESENT;
  req.Priority = DIMSE_PRIORITY_MEDIUM;
  T_DIMSE_C_StoreRSP rsp;
  memset(&rsp, 0, sizeof rsp);
  DcmDataset *detail = NULL;
  c = DIMSE_storeUser(a.assoc, id, &req, NULL, ds, NULL, NULL, DIMSE_NONBLOCKING,
                      timeout_or_default(o->dimse_timeout), &rsp, &detail);
  delete detail;
  r->seconds = now_s() - t0;
  if (c.bad()) {
    const char *why = c == DIMSE_NODATAAVAILABLE
                          ? "no C-STORE response within the DIMSE timeout"
                          : c.text();
    set_result(r, CTP_ENET, -1, "C-STORE to %s: association lost: %s",
               peer_name(o).c_str(), why);
    return false;
  }
  int st = rsp.DimseStatus;
  if (st == STATUS_Success) {
    set_result(r, 0, st, "%s", "");
  } else if ((st & 0xF000) == 0xB000) {
    set_result(r, 0, st, "stored with warning 0x%04X: %s", st, ctp_scu_status_str(st));
  } else {
    set_result(r, CTP_EDICOM, st, "C-STORE status 0x%04X from %s: %s", st,
               peer_name(o).c_str(), ctp_scu_status_str(st));
  }
  return true;
}

int send_files(const ctp_scu_opts *o, const char *const *files, int n,
               ctp_scu_result *results) {
  std::vector<FileInfo> infos((size_t)n);
  std::vector<Context> ctxs;
  for (int i = 0; i < n; i++) {
    set_result(&results[i], CTP_ENET, -1, "not sent");
    results[i].seconds = 0;
    if (read_meta(files[i], &infos[i], &results[i])) continue;
    int k = -1;
    for (size_t j = 0; j < ctxs.size() && k < 0; j++)
      if (ctxs[j].sop_class == infos[i].sop_class && ctxs[j].xfer == infos[i].xfer)
        k = (int)j;
    if (k < 0) {
      if ((int)ctxs.size() >= kMaxContexts) {
        set_result(&results[i], CTP_ERANGE, -1,
                   "more than %d SOP class / transfer syntax pairs in one batch",
                   kMaxContexts);
        continue;
      }
      ctxs.push_back(Context{infos[i].sop_class, infos[i].xfer, 0});
      k = (int)ctxs.size() - 1;
    }
    infos[i].ctx = k;
  }
  if (ctxs.empty()) return 0; /* nothing readable: each result says why */
  Assoc a;
  int rc = associate(o, ctxs, a);
  if (rc) {
    for (int i = 0; i < n; i++)
      if (infos[i].ctx >= 0) set_result(&results[i], rc, -1, "%s", ctp_last_error());
    return rc;
  }
  bool alive = true;
  int lost_at = -1;
  for (int i = 0; i < n; i++) {
    if (infos[i].ctx < 0) continue;
    if (!alive) {
      set_result(&results[i], CTP_ENET, -1, "not sent: %s", results[lost_at].error);
      continue;
    }
    alive = store_one(o, a, files[i], infos[i], &results[i]);
    if (!alive) lost_at = i;
  }
  if (alive) a.release();
  else a.abort();
  return 0;
}

int echo(const ctp_scu_opts *o) {
  std::vector<Context> ctxs{Context{UID_VerificationSOPClass,
                                    UID_LittleEndianExplicitTransferSyntax, 0}};
  Assoc a;
  int rc = associate(o, ctxs, a);
  if (rc) return rc;
  T_ASC_PresentationContextID id =
      ASC_findAcceptedPresentationContextID(a.assoc, UID_VerificationSOPClass);
  if (!id)
    return ctp_seterr(CTP_EDICOM, "%s did not accept the Verification SOP class",
                      peer_name(o).c_str());
  DIC_US status = 0;
  DcmDataset *detail = NULL;
  OFCondition c = DIMSE_echoUser(a.assoc, a.assoc->nextMsgID++, DIMSE_NONBLOCKING,
                                 timeout_or_default(o->dimse_timeout), &status,
                                 &detail);
  delete detail;
  if (c.bad()) {
    a.abort();
    return ctp_seterr(CTP_ENET, "C-ECHO to %s: %s", peer_name(o).c_str(), c.text());
  }
  a.release();
  if (status != STATUS_Success)
    return ctp_seterr(CTP_EDICOM, "C-ECHO status 0x%04X from %s", status,
                      peer_name(o).c_str());
  return 0;
}

/* --- the folder destination --------------------------------------------- */

int fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  close(fd);
  return rc;
}

/* Copies src to dir/<basename> through a temporary name. */
int copy_one(const char *dir, const char *src, ctp_scu_result *r) {
  double t0 = now_s();
  const char *base = strrchr(src, '/');
  base = base ? base + 1 : src;
  std::string dst = std::string(dir) + "/" + base;
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s/.%s.tmp%ld", dir, base, (long)getpid());
  int in = open(src, O_RDONLY | O_CLOEXEC);
  if (in < 0) {
    set_result(r, CTP_EIO, -1, "%s: %s", src, strerror(errno));
    return r->rc;
  }
  int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (out < 0) {
    int e = errno;
    close(in);
    set_result(r, e == ENOSPC ? CTP_ENOSPC : CTP_EIO, -1, "%s: %s", tmp, strerror(e));
    return r->rc;
  }
  char buf[65536];
  int err = 0;
  for (;;) {
    ssize_t k = read(in, buf, sizeof buf);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      if (k < 0) err = errno;
      break;
    }
    for (ssize_t off = 0; off < k && !err;) {
      ssize_t w = write(out, buf + off, (size_t)(k - off));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) err = errno;
      else off += w;
    }
    if (err) break;
  }
  close(in);
  if (!err && fsync(out) != 0) err = errno;
  if (close(out) != 0 && !err) err = errno;
  if (!err && rename(tmp, dst.c_str()) != 0) err = errno;
  if (!err && fsync_dir(dir) != 0) err = errno;
  if (err) {
    unlink(tmp);
    set_result(r, err == ENOSPC ? CTP_ENOSPC : CTP_EIO, -1, "copy to %s: %s",
               dst.c_str(), strerror(err));
    return r->rc;
  }
  set_result(r, 0, 0, "%s", "");
  r->seconds = now_s() - t0;
  return 0;
}

}  // namespace

extern "C" {

int ctp_dest_parse(const char *text, ctp_dest *d) {
  static const char forms[] =
      " (forms: \"AE@host:port\", e.g. \"PACS@10.0.0.5:104\", or \"dir:/abs/path\")";
  if (!text || !d) return ctp_seterr(CTP_EINVAL, "destination: no text");
  memset(d, 0, sizeof *d);
  if (strncmp(text, "dir:", 4) == 0) {
    const char *p = text + 4;
    if (p[0] != '/' || strlen(p) >= sizeof d->dir)
      return ctp_seterr(CTP_EINVAL, "destination \"%s\": the folder must be an "
                        "absolute path%s", text, forms);
    d->kind = CTP_DEST_DIR;
    snprintf(d->dir, sizeof d->dir, "%s", p);
    return 0;
  }
  const char *at = strchr(text, '@');
  const char *colon = at ? strrchr(at, ':') : NULL;
  if (!at || !colon)
    return ctp_seterr(CTP_EINVAL, "destination \"%s\" is not understood%s", text, forms);
  size_t ae_len = (size_t)(at - text), host_len = (size_t)(colon - at - 1);
  if (ae_len == 0 || ae_len > 16)
    return ctp_seterr(CTP_EINVAL, "destination \"%s\": the AE title must have 1 "
                      "to 16 characters%s", text, forms);
  for (size_t i = 0; i < ae_len; i++)
    if (text[i] < 0x20 || text[i] > 0x7e || text[i] == '\\')
      return ctp_seterr(CTP_EINVAL, "destination \"%s\": the AE title has a "
                        "character that is not printable ASCII%s", text, forms);
  if (host_len == 0 || host_len >= sizeof d->host)
    return ctp_seterr(CTP_EINVAL, "destination \"%s\": no host%s", text, forms);
  for (size_t i = 0; i < host_len; i++) {
    char ch = at[1 + i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          (ch >= '0' && ch <= '9') || ch == '.' || ch == '-'))
      return ctp_seterr(CTP_EINVAL, "destination \"%s\": the host must be a name "
                        "or an IPv4 address%s", text, forms);
  }
  char *end = NULL;
  long port = strtol(colon + 1, &end, 10);
  if (!colon[1] || *end || port < 1 || port > 65535)
    return ctp_seterr(CTP_EINVAL, "destination \"%s\": the port must be 1 to "
                      "65535%s", text, forms);
  d->kind = CTP_DEST_SCP;
  memcpy(d->ae_title, text, ae_len);
  memcpy(d->host, at + 1, host_len);
  d->port = (int)port;
  return 0;
}

const char *ctp_scu_status_str(int st) {
  switch (st) {
    case 0x0000: return "success";
    case 0xB000: return "warning: coercion of data elements";
    case 0xB006: return "warning: elements discarded";
    case 0xB007: return "warning: data set does not match SOP class";
    case 0x0122: return "refused: SOP class not supported";
    case 0x0124: return "refused: not authorized";
    case 0x0110: return "processing failure";
    case 0x0111: return "duplicate SOP instance";
    case 0x0117: return "invalid SOP instance";
    case 0x0210: return "duplicate invocation";
    case 0x0211: return "unrecognized operation";
    case 0x0212: return "mistyped argument";
    case 0x0213: return "resource limitation";
    case 0xFE00: return "cancelled";
  }
  if ((st & 0xFF00) == 0xA700) return "refused: out of resources";
  if ((st & 0xFF00) == 0xA900) return "error: data set does not match SOP class";
  if ((st & 0xF000) == 0xC000) return "error: cannot understand";
  if ((st & 0xF000) == 0xB000) return "warning";
  return "unknown status";
}

int ctp_scu_send_files(const ctp_scu_opts *o, const char *const *files, int n,
                       ctp_scu_result *results) {
  if (!o || !o->called_ae || !o->host || o->port < 1 || o->port > 65535 ||
      n < 0 || (n > 0 && (!files || !results)))
    return ctp_seterr(CTP_EINVAL, "ctp_scu_send_files: bad arguments");
  if (n == 0) return 0;
  try {
    return send_files(o, files, n, results);
  } catch (const std::bad_alloc &) {
    return ctp_seterr(CTP_ENOMEM, "out of memory");
  } catch (...) {
    return ctp_seterr(CTP_EDICOM, "unexpected error in the DICOM library");
  }
}

int ctp_scu_echo(const ctp_scu_opts *o) {
  if (!o || !o->called_ae || !o->host || o->port < 1 || o->port > 65535)
    return ctp_seterr(CTP_EINVAL, "ctp_scu_echo: bad arguments");
  try {
    return echo(o);
  } catch (const std::bad_alloc &) {
    return ctp_seterr(CTP_ENOMEM, "out of memory");
  } catch (...) {
    return ctp_seterr(CTP_EDICOM, "unexpected error in the DICOM library");
  }
}

int ctp_scu_copy_files(const char *dir, const char *const *files, int n,
                       ctp_scu_result *results) {
  if (!dir || dir[0] != '/' || n < 0 || (n > 0 && (!files || !results)))
    return ctp_seterr(CTP_EINVAL, "ctp_scu_copy_files: bad arguments");
  try {
    if (int rc = ctp_mkdir_p(dir, 0750)) {
      for (int i = 0; i < n; i++) set_result(&results[i], rc, -1, "%s", ctp_last_error());
      return rc;
    }
    for (int i = 0; i < n; i++) copy_one(dir, files[i], &results[i]);
    return 0;
  } catch (...) {
    return ctp_seterr(CTP_ENOMEM, "out of memory");
  }
}

}  // extern "C"
