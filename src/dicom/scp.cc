/*
 * scp.cc — the DICOM Storage SCP of ctphased, on DCMTK's ASC/DIMSE layer.
 *
 * See include/ctphase/scp.h for the contract. This file owns the sockets
 * and threads of the network side:
 *
 * Listener. One thread polls the listening socket (which we bind
 * ourselves, so that the bind address, port 0 and IPv6 work: DCMTK 3.6.7
 * has no IPv6 listener of its own, but only ever reads and writes the
 * accepted sockets we hand it, which works for either family) and a wake-up
 * pipe. Every accepted connection gets a detached thread; at most
 * max_associations serve at once, and a few more threads may exist only to
 * answer A-ASSOCIATE-RJ ("local limit exceeded") to the excess. Beyond
 * those the TCP connection is closed at once.
 *
 * Negotiation. DCMTK's ASC_receiveAssociation() accepts on a listening
 * socket of its own, or takes an already accepted one from the global
 * dcmExternalSocketHandle, which is not thread-safe. So the connection
 * thread first waits (poll + MSG_PEEK, bounded by the ACSE timeout) until
 * the whole A-ASSOCIATE-RQ PDU sits in the socket buffer, and only then
 * takes a process-wide mutex, hands the socket over and lets DCMTK parse
 * the PDU, which no longer blocks. A stalled peer therefore holds only its
 * own thread, and only for the ACSE timeout.
 *
 * Service. Between messages the thread waits with ASC_dataWaiting() in
 * one-second steps (to notice shutdown) up to the DIMSE timeout. A C-STORE
 * dataset is streamed bit for bit into a temporary Part-10 file through a
 * consumer that writes to our own file descriptor: a write error (disk
 * full) is remembered while the rest of the dataset is still read from
 * the network, so the association stays in step and the peer gets
 * 0xA700 instead of an abort. The file is fsynced, parsed (lazily: pixel
 * data stays on disk) and checked; then the on_store callback decides.
 *
 * Shutdown. ctp_scp_stop() wakes the listener and closes the listening
 * socket. ctp_scp_free() also sets the abort flag and shuts down every
 * connection's socket, which wakes any thread blocked in a read; it waits
 * until all connection threads have left.
 *
 * No exception leaves this file: the public functions and every thread
 * body catch at their boundary.
 */
#include "ctphase/scp.h"

#include "ctphase/dicom.h"
#include "ctphase/error.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dctk.h>
#include <dcmtk/dcmdata/dcostrma.h>
#include <dcmtk/dcmnet/assoc.h>
#include <dcmtk/dcmnet/dimse.h>
#include <dcmtk/dcmnet/dcmtrans.h>
#include <dcmtk/dcmnet/dul.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <new>
#include <string>
#include <vector>

namespace {

/* Threads allowed beyond max_associations, only to send a rejection. */
const int kRejectSlots = 4;
/* An A-ASSOCIATE-RQ larger than this is handed to DCMTK without waiting
 * for all of it (it would not fit the socket buffer anyway). */
const size_t kMaxPeekPdu = 60000;
const char kImplementationClassUid[] = "1.2.826.0.1.3680043.10.1126.1";
const char kImplementationVersion[] = "CTPHASE_" CTPHASE_VERSION;

/* Guards dcmExternalSocketHandle and ASC_receiveAssociation on the shared
 * network object. */
std::mutex g_accept_mutex;

double now_s() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

std::string trim(const OFString &s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\0')) b++;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\0')) e--;
  return std::string(s.c_str() + b, e - b);
}

std::string get_str(DcmItem *ds, const DcmTagKey &tag) {
  OFString v;
  if (ds->findAndGetOFStringArray(tag, v).bad()) return "";
  return trim(v);
}

bool is_ct_image_class(const std::string &uid) {
  return uid == UID_CTImageStorage || uid == UID_EnhancedCTImageStorage ||
         uid == UID_LegacyConvertedEnhancedCTImageStorage;
}

/* A DcmConsumer writing to a file descriptor, through a buffer (the meta
 * header arrives in many tiny pieces; dataset fragments are large and go
 * straight through). It never reports failure to DCMTK: the first error
 * is kept (err) and later data is counted and dropped, so that the
 * network side reads the dataset to its end. finish() flushes. */
class FdConsumer : public DcmConsumer {
 public:
  explicit FdConsumer(int fd) : fd_(fd) {}
  OFBool good() const override { return OFTrue; }
  OFCondition status() const override { return EC_Normal; }
  OFBool isFlushed() const override { return OFTrue; }
  offile_off_t avail() const override { return 1 << 30; }
  offile_off_t write(const void *buf, offile_off_t len) override {
    bytes += (uint64_t)len;
    if (fill_ + (size_t)len > sizeof buf_) finish();
    if ((size_t)len >= sizeof buf_) put(static_cast<const char *>(buf), (size_t)len);
    else {
      memcpy(buf_ + fill_, buf, (size_t)len);
      fill_ += (size_t)len;
    }
    return len;
  }
  void flush() override {}
  void finish() {
    put(buf_, fill_);
    fill_ = 0;
  }

  int err = 0;
  uint64_t bytes = 0;

 private:
  void put(const char *p, size_t left) {
    while (!err && left > 0) {
      ssize_t w = ::write(fd_, p, left);
      if (w < 0) {
        if (errno == EINTR) continue;
        err = errno;
        break;
      }
      p += w;
      left -= (size_t)w;
    }
  }
  int fd_;
  char buf_[16384];
  size_t fill_ = 0;
};

class FdStream : public DcmOutputStream {
 public:
  explicit FdStream(DcmConsumer *c) : DcmOutputStream(c) {}
};

}  // namespace

/* One connection and, once negotiated, its association. */
struct ScpConn {
  ctp_scp *scp = nullptr;
  int fd = -1;  /* for shutdown(); -1 once the association is destroyed */
  ctp_scp_assoc info{};
  ctp_scp_assoc_stats st{};
  double t0 = 0;
  uint64_t seq = 0;   /* temporary file counter */
  bool serving = false;
  ScpConn *prev = nullptr, *next = nullptr;
};

struct ctp_scp {
  std::string bind_address, ae_title, tmp_dir;
  std::vector<std::string> sop_classes;
  std::vector<const char *> abstract; /* pointers into sop_classes */
  int port = 0, max_assoc = 1, acse_timeout = 30, dimse_timeout = 60;
  int max_pdu = ASC_DEFAULTMAXPDU;
  ctp_scp_callbacks cb{};

  int listen_fd = -1;
  int wake[2] = {-1, -1};
  pthread_t listener{};
  bool listener_started = false;
  bool stopped = false;
  T_ASC_Network *net = nullptr;

  std::mutex mu;
  std::condition_variable cv;
  int nthreads = 0; /* connection threads alive */
  int serving = 0;  /* accepted associations */
  uint64_t next_id = 1;
  ScpConn *conns = nullptr;
  std::atomic<bool> stopping{false};
  std::atomic<bool> aborting{false};
};

namespace {

void scp_log(ctp_scp *s, int level, const char *event, const ScpConn *c,
             const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

void scp_log(ctp_scp *s, int level, const char *event, const ScpConn *c,
             const char *fmt, ...) {
  if (!s->cb.on_log) return;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  s->cb.on_log(s->cb.ud, level, event, c ? &c->info : nullptr, msg);
}

const char *kTransferSyntaxes[] = {
    UID_LittleEndianExplicitTransferSyntax,
    UID_LittleEndianImplicitTransferSyntax,
    UID_BigEndianExplicitTransferSyntax,
    UID_DeflatedExplicitVRLittleEndianTransferSyntax,
    UID_JPEGProcess14SV1TransferSyntax,
    UID_JPEGProcess14TransferSyntax,
    UID_JPEGProcess1TransferSyntax,
    UID_JPEGProcess2_4TransferSyntax,
    UID_JPEGLSLosslessTransferSyntax,
    UID_JPEGLSLossyTransferSyntax,
    UID_RLELosslessTransferSyntax,
    UID_JPEG2000LosslessOnlyTransferSyntax,
    UID_JPEG2000TransferSyntax,
};

/* ------------------------------------------------------------------ */
/* Negotiation                                                          */
/* ------------------------------------------------------------------ */

/* Waits until a whole A-ASSOCIATE-RQ PDU can be read from fd without
 * blocking. Returns 0, or -1 with *why set (timeout, closed, not an
 * association request, shutdown). */
int wait_for_request(ctp_scp *s, int fd, const char **why) {
  double deadline = now_s() + s->acse_timeout;
  std::vector<unsigned char> buf(6);
  size_t want = 6;
  for (;;) {
    if (s->aborting.load()) {
      *why = "shutdown";
      return -1;
    }
    ssize_t n = recv(fd, buf.data(), want, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) {
      *why = "connection closed before A-ASSOCIATE-RQ";
      return -1;
    }
    if (n >= 6 && want == 6) {
      if (buf[0] != 0x01) {
        *why = "first PDU is not an A-ASSOCIATE-RQ";
        return -1;
      }
      uint32_t len = ((uint32_t)buf[2] << 24) | ((uint32_t)buf[3] << 16) |
                     ((uint32_t)buf[4] << 8) | buf[5];
      if (len + 6 > kMaxPeekPdu) return 0;
      want = len + 6;
      buf.resize(want);
      continue;
    }
    if (n >= (ssize_t)want) return 0;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      *why = "connection error before A-ASSOCIATE-RQ";
      return -1;
    }
    double left = deadline - now_s();
    if (left <= 0) {
      *why = "no A-ASSOCIATE-RQ within the ACSE timeout";
      return -1;
    }
    struct pollfd p = {fd, POLLIN, 0};
    int ms = left > 0.2 ? 200 : (int)(left * 1000) + 1;
    if (n > 0) {
      /* Part of the PDU is there: poll() would return at once, so sleep
       * a little while the rest arrives. */
      usleep(2000);
    } else {
      poll(&p, 1, ms);
    }
  }
}

void reject(T_ASC_Association *assoc, int verdict) {
  T_ASC_RejectParameters rej;
  switch (verdict) {
    case CTP_SCP_REJECT_CALLED_AE:
      rej = {ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER,
             ASC_REASON_SU_CALLEDAETITLENOTRECOGNIZED};
      break;
    case CTP_SCP_REJECT_CALLING_AE:
      rej = {ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER,
             ASC_REASON_SU_CALLINGAETITLENOTRECOGNIZED};
      break;
    case CTP_SCP_REJECT_BUSY:
      rej = {ASC_RESULT_REJECTEDTRANSIENT,
             ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
             ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED};
      break;
    case CTP_SCP_REJECT_STOPPING:
      rej = {ASC_RESULT_REJECTEDTRANSIENT,
             ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
             ASC_REASON_SP_PRES_TEMPORARYCONGESTION};
      break;
    default:
      rej = {ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER,
             ASC_REASON_SU_NOREASON};
      break;
  }
  ASC_rejectAssociation(assoc, &rej);
}

/* Decides on an association: called AE, shutdown, limit, then the
 * caller's policy. Counts it as serving when accepted. */
int decide(ctp_scp *s, ScpConn *c) {
  if (s->ae_title != c->info.called_ae) return CTP_SCP_REJECT_CALLED_AE;
  if (s->stopping.load()) return CTP_SCP_REJECT_STOPPING;
  {
    std::lock_guard<std::mutex> lk(s->mu);
    if (s->serving >= s->max_assoc) return CTP_SCP_REJECT_BUSY;
    s->serving++;
    c->serving = true;
  }
  int v = s->cb.on_associate ? s->cb.on_associate(s->cb.ud, &c->info)
                             : CTP_SCP_ACCEPT;
  if (v != CTP_SCP_ACCEPT) {
    std::lock_guard<std::mutex> lk(s->mu);
    s->serving--;
    c->serving = false;
  }
  return v;
}

/* ------------------------------------------------------------------ */
/* C-STORE                                                              */
/* ------------------------------------------------------------------ */

/* Writes the File Meta Information (preamble, "DICM", group 0002) for a
 * dataset announced by the C-STORE-RQ. */
OFCondition write_meta(FdStream &out, const T_DIMSE_C_StoreRQ &req,
                       const char *xfer, const char *calling_ae) {
  DcmMetaInfo meta;
  Uint8 version[2] = {0, 1};
  OFCondition c = meta.putAndInsertUint8Array(DCM_FileMetaInformationVersion,
                                              version, 2);
  if (c.good()) c = meta.putAndInsertString(DCM_MediaStorageSOPClassUID,
                                            req.AffectedSOPClassUID);
  if (c.good()) c = meta.putAndInsertString(DCM_MediaStorageSOPInstanceUID,
                                            req.AffectedSOPInstanceUID);
  if (c.good()) c = meta.putAndInsertString(DCM_TransferSyntaxUID, xfer);
  if (c.good()) c = meta.putAndInsertString(DCM_ImplementationClassUID,
                                            kImplementationClassUid);
  if (c.good()) c = meta.putAndInsertString(DCM_ImplementationVersionName,
                                            kImplementationVersion);
  if (c.good() && calling_ae[0])
    c = meta.putAndInsertString(DCM_SourceApplicationEntityTitle, calling_ae);
  if (c.good()) c = meta.putAndInsertUint32(DCM_FileMetaInformationGroupLength, 0);
  if (c.good())
    c = meta.computeGroupLengthAndPadding(EGL_withGL, EPD_noChange,
                                          EXS_LittleEndianExplicit,
                                          EET_ExplicitLength);
  if (c.bad()) return c;
  meta.transferInit();
  c = meta.write(out, EXS_LittleEndianExplicit, EET_ExplicitLength, nullptr);
  meta.transferEnd();
  return c;
}

struct Checked {
  std::string sop_class, sop_instance, study, series, modality;
};

/* Parses the received file and checks it against its command. Returns a
 * DIMSE status (0 when usable) and says why not in *why. */
unsigned check_file(const char *path, const T_DIMSE_C_StoreRQ &req,
                    E_TransferSyntax xfer, Checked *out, std::string *why) {
  DcmFileFormat ff;
  OFCondition c = ff.loadFile(OFFilename(path), EXS_Unknown, EGL_noChange,
                              4096, ERM_autoDetect);
  if (c.bad()) {
    *why = std::string("unreadable dataset: ") + c.text();
    return CTP_DIMSE_CANNOT_UNDERSTAND;
  }
  DcmDataset *ds = ff.getDataset();
  out->sop_class = get_str(ds, DCM_SOPClassUID);
  out->sop_instance = get_str(ds, DCM_SOPInstanceUID);
  out->study = get_str(ds, DCM_StudyInstanceUID);
  out->series = get_str(ds, DCM_SeriesInstanceUID);
  out->modality = get_str(ds, DCM_Modality);
  if (out->sop_instance.empty()) {
    *why = "the dataset has no SOPInstanceUID";
    return CTP_DIMSE_DATASET_MISMATCH;
  }
  if (out->sop_instance != trim(req.AffectedSOPInstanceUID)) {
    *why = "the dataset's SOPInstanceUID differs from the C-STORE-RQ's";
    return CTP_DIMSE_DATASET_MISMATCH;
  }
  if (out->sop_class != trim(req.AffectedSOPClassUID)) {
    *why = "the dataset's SOPClassUID differs from the C-STORE-RQ's";
    return CTP_DIMSE_DATASET_MISMATCH;
  }
  if (!is_ct_image_class(out->sop_class)) return 0;
  /* A CT image must carry pixels we could read. */
  Uint16 rows = 0, cols = 0, ba = 0, spp = 1;
  if (ds->findAndGetUint16(DCM_Rows, rows).bad() || rows == 0 ||
      ds->findAndGetUint16(DCM_Columns, cols).bad() || cols == 0 ||
      ds->findAndGetUint16(DCM_BitsAllocated, ba).bad() || ba == 0) {
    *why = "a CT image without valid Rows, Columns or BitsAllocated";
    return CTP_DIMSE_DATASET_MISMATCH;
  }
  ds->findAndGetUint16(DCM_SamplesPerPixel, spp);
  Sint32 frames = 1;
  if (ds->findAndGetSint32(DCM_NumberOfFrames, frames).bad() || frames < 1)
    frames = 1;
  DcmElement *px = nullptr;
  if (ds->findAndGetElement(DCM_PixelData, px).bad() || !px) {
    *why = "a CT image without PixelData";
    return CTP_DIMSE_DATASET_MISMATCH;
  }
  if (!DcmXfer(xfer).isEncapsulated()) {
    unsigned long long need = (unsigned long long)rows * cols * (spp ? spp : 1) *
                              frames * ba / 8;
    if ((unsigned long long)px->getLength() < need) {
      char b[200];
      snprintf(b, sizeof b,
               "PixelData holds %lu bytes, Rows x Columns x frames needs %llu",
               (unsigned long)px->getLength(), need);
      *why = b;
      return CTP_DIMSE_DATASET_MISMATCH;
    }
  }
  return 0;
}

OFCondition send_store_rsp(T_ASC_Association *assoc,
                           T_ASC_PresentationContextID pid,
                           T_DIMSE_C_StoreRQ &req, unsigned status) {
  T_DIMSE_C_StoreRSP rsp;
  memset(&rsp, 0, sizeof rsp);
  rsp.MessageIDBeingRespondedTo = req.MessageID;
  rsp.DataSetType = DIMSE_DATASET_NULL;
  rsp.DimseStatus = (DIC_US)status;
  OFStandard::strlcpy(rsp.AffectedSOPClassUID, req.AffectedSOPClassUID,
                      sizeof rsp.AffectedSOPClassUID);
  OFStandard::strlcpy(rsp.AffectedSOPInstanceUID, req.AffectedSOPInstanceUID,
                      sizeof rsp.AffectedSOPInstanceUID);
  rsp.opts = O_STORE_AFFECTEDSOPCLASSUID | O_STORE_AFFECTEDSOPINSTANCEUID;
  return DIMSE_sendStoreResponse(assoc, pid, &req, &rsp, nullptr);
}

/* Reads and discards a dataset, then answers status. */
OFCondition drain_and_answer(ctp_scp *s, ScpConn *c, T_ASC_Association *assoc,
                             T_ASC_PresentationContextID pid,
                             T_DIMSE_C_StoreRQ &req, unsigned status) {
  DIC_UL bytes = 0, pdvs = 0;
  OFCondition cond = DIMSE_ignoreDataSet(assoc, DIMSE_NONBLOCKING,
                                         s->dimse_timeout, &bytes, &pdvs);
  if (cond.bad()) return cond;
  c->st.bytes += bytes;
  if (status == 0) c->st.stores_ok++;
  else c->st.stores_failed++;
  return send_store_rsp(assoc, pid, req, status);
}

/* Receives one dataset into a temporary file: 0 and the open descriptor
 * closed, or a DIMSE failure status (file removed); a network failure is
 * returned in *net. */
unsigned receive_to_file(ctp_scp *s, ScpConn *c, T_ASC_Association *assoc,
                         T_DIMSE_C_StoreRQ &req, const char *xfer,
                         const std::string &tmp, double *t_recv,
                         double *t_sync, uint64_t *size, OFCondition *net) {
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  FdConsumer consumer(fd);
  FdStream stream(&consumer);
  if (fd < 0) consumer.err = errno;
  else {
    OFCondition mc = write_meta(stream, req, xfer, c->info.calling_ae);
    if (mc.bad() && !consumer.err) consumer.err = EIO;
  }
  uint64_t meta_bytes = consumer.bytes;
  double t0 = now_s();
  T_ASC_PresentationContextID pid2 = 0;
  *net = DIMSE_receiveDataSetInFile(assoc, DIMSE_NONBLOCKING, s->dimse_timeout,
                                    &pid2, &stream, nullptr, nullptr);
  *t_recv = now_s() - t0;
  if (fd >= 0) consumer.finish();
  c->st.bytes += consumer.bytes - meta_bytes;
  *size = consumer.bytes;
  int err = consumer.err;
  double t1 = now_s();
  if (fd >= 0 && !err && net->good() && fsync(fd) != 0) err = errno;
  *t_sync = now_s() - t1;
  if (fd >= 0 && close(fd) != 0 && !err) err = errno;
  if (net->bad() || err) {
    if (fd >= 0) unlink(tmp.c_str());
    if (net->bad()) return CTP_DIMSE_OUT_OF_RESOURCES;
    scp_log(s, 3, "store_write_failed", c,
            "cannot write the received dataset to %s: %s", tmp.c_str(),
            strerror(err));
    return CTP_DIMSE_OUT_OF_RESOURCES;
  }
  return 0;
}

OFCondition serve_store(ctp_scp *s, ScpConn *c, T_ASC_Association *assoc,
                        T_ASC_PresentationContextID pid,
                        T_DIMSE_C_StoreRQ &req) {
  unsigned status = 0;
  if (s->cb.on_store_begin)
    status = s->cb.on_store_begin(s->cb.ud, &c->info, req.AffectedSOPClassUID,
                                  req.AffectedSOPInstanceUID);
  if (status == CTP_SCP_DROP)
    return drain_and_answer(s, c, assoc, pid, req, CTP_DIMSE_SUCCESS);
  if (status != 0) return drain_and_answer(s, c, assoc, pid, req, status);

  T_ASC_PresentationContext pc;
  if (ASC_findAcceptedPresentationContext(assoc->params, pid, &pc).bad())
    return drain_and_answer(s, c, assoc, pid, req, CTP_DIMSE_CANNOT_UNDERSTAND);
  char name[96];
  snprintf(name, sizeof name, "/a%llu-%llu.part",
           (unsigned long long)c->info.id, (unsigned long long)++c->seq);
  std::string tmp = s->tmp_dir + name;
  double t_recv = 0, t_sync = 0;
  uint64_t size = 0;
  OFCondition net = EC_Normal;
  status = receive_to_file(s, c, assoc, req, pc.acceptedTransferSyntax, tmp,
                           &t_recv, &t_sync, &size, &net);
  if (net.bad()) {
    scp_log(s, 2, "store_receive_failed", c,
            "the dataset did not arrive: %s", net.text());
    return net;
  }
  if (status == 0) {
    Checked k;
    std::string why;
    status = check_file(tmp.c_str(), req,
                        DcmXfer(pc.acceptedTransferSyntax).getXfer(), &k, &why);
    if (status != 0) {
      scp_log(s, 2, "store_refused", c, "status 0x%04X: %s", status,
              why.c_str());
    } else {
      ctp_scp_instance inst;
      inst.assoc = &c->info;
      inst.tmp_path = tmp.c_str();
      inst.bytes = size;
      inst.sop_class_uid = k.sop_class.c_str();
      inst.sop_instance_uid = k.sop_instance.c_str();
      inst.study_instance_uid = k.study.c_str();
      inst.series_instance_uid = k.series.c_str();
      inst.modality = k.modality.c_str();
      inst.transfer_syntax = pc.acceptedTransferSyntax;
      inst.receive_seconds = t_recv;
      inst.write_seconds = t_sync;
      status = s->cb.on_store(s->cb.ud, &inst);
    }
    unlink(tmp.c_str());
  }
  if (status == 0) c->st.stores_ok++;
  else c->st.stores_failed++;
  return send_store_rsp(assoc, pid, req, status);
}

/* ------------------------------------------------------------------ */
/* One association                                                      */
/* ------------------------------------------------------------------ */

/* Waits for the next command: true when one is there; false on idle
 * timeout or shutdown (end says which). */
bool wait_for_command(ctp_scp *s, T_ASC_Association *assoc, const char **end) {
  int idle = 0;
  while (!ASC_dataWaiting(assoc, 1)) {
    if (s->aborting.load()) {
      *end = "shutdown";
      return false;
    }
    if (++idle >= s->dimse_timeout) {
      *end = "timeout";
      return false;
    }
  }
  return true;
}

void accept_contexts(ctp_scp *s, T_ASC_Association *assoc) {
  ASC_acceptContextsWithPreferredTransferSyntaxes(
      assoc->params, s->abstract.data(), (int)s->abstract.size(),
      kTransferSyntaxes, (int)(sizeof kTransferSyntaxes / sizeof *kTransferSyntaxes));
}

/* Serves DIMSE messages until the association ends; returns how. */
const char *serve(ctp_scp *s, ScpConn *c, T_ASC_Association *assoc) {
  for (;;) {
    const char *end = nullptr;
    if (!wait_for_command(s, assoc, &end)) {
      scp_log(s, 2, "assoc_abort", c, "aborting the association: %s",
              strcmp(end, "timeout") == 0 ? "idle longer than the DIMSE timeout"
                                          : "the service is stopping");
      ASC_abortAssociation(assoc);
      return end;
    }
    T_ASC_PresentationContextID pid = 0;
    T_DIMSE_Message msg;
    OFCondition cond = DIMSE_receiveCommand(assoc, DIMSE_NONBLOCKING,
                                            s->dimse_timeout, &pid, &msg,
                                            nullptr);
    if (cond == DUL_PEERREQUESTEDRELEASE) {
      ASC_acknowledgeRelease(assoc);
      return "released";
    }
    if (cond == DUL_PEERABORTEDASSOCIATION) return "aborted";
    if (cond.bad()) {
      scp_log(s, 2, "assoc_error", c, "cannot read a command: %s", cond.text());
      ASC_abortAssociation(assoc);
      return cond == DIMSE_NODATAAVAILABLE ? "timeout" : "error";
    }
    if (msg.CommandField == DIMSE_C_ECHO_RQ) {
      c->st.echoes++;
      cond = DIMSE_sendEchoResponse(assoc, pid, &msg.msg.CEchoRQ,
                                    STATUS_Success, nullptr);
    } else if (msg.CommandField == DIMSE_C_STORE_RQ) {
      cond = serve_store(s, c, assoc, pid, msg.msg.CStoreRQ);
    } else {
      scp_log(s, 2, "assoc_error", c,
              "unsupported DIMSE command 0x%04X: aborting",
              (unsigned)msg.CommandField);
      ASC_abortAssociation(assoc);
      return "error";
    }
    if (cond.bad()) {
      ASC_abortAssociation(assoc);
      return s->aborting.load() ? "shutdown" : "error";
    }
  }
}

void peer_name(int fd, ctp_scp_assoc *a) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  snprintf(a->peer, sizeof a->peer, "unknown");
  if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0) return;
  if (ss.ss_family == AF_INET) {
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    inet_ntop(AF_INET, &in->sin_addr, a->peer, sizeof a->peer);
    a->peer_port = ntohs(in->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    /* An IPv4 peer of a dual-stack listener is named as IPv4. */
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
      inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], a->peer, sizeof a->peer);
    else
      inet_ntop(AF_INET6, &in6->sin6_addr, a->peer, sizeof a->peer);
    a->peer_port = ntohs(in6->sin6_port);
  }
}

/* Hands the socket to DCMTK and reads the A-ASSOCIATE-RQ. DCMTK 3.6.7
 * takes the peer's address for its own records from a struct sockaddr
 * read as IPv4, so for an IPv6 peer its callingPresentationAddress is
 * meaningless; we never use it (peer_name() names the peer). */
OFCondition receive_association(ctp_scp *s, int fd, T_ASC_Association **assoc) {
  std::lock_guard<std::mutex> lk(g_accept_mutex);
  dcmExternalSocketHandle.set(fd);
  OFCondition cond = ASC_receiveAssociation(s->net, assoc, s->max_pdu, nullptr,
                                            nullptr, OFFalse, DUL_NOBLOCK,
                                            s->acse_timeout);
  dcmExternalSocketHandle.set(DCMNET_INVALID_SOCKET);
  return cond;
}

void run_connection(ScpConn *c) {
  ctp_scp *s = c->scp;
  const char *why = nullptr;
  c->st.end = "error";
  if (wait_for_request(s, c->fd, &why) != 0) {
    scp_log(s, 2, "assoc_dropped", c, "%s", why);
    c->st.end = strcmp(why, "shutdown") == 0 ? "shutdown" : "timeout";
    std::lock_guard<std::mutex> lk(s->mu);
    close(c->fd);
    c->fd = -1;
    return;
  }
  T_ASC_Association *assoc = nullptr;
  OFCondition cond = receive_association(s, c->fd, &assoc);
  if (cond.bad() || !assoc) {
    scp_log(s, 2, "assoc_error", c, "cannot read the A-ASSOCIATE-RQ: %s",
            cond.text());
  } else {
    ASC_getAPTitles(assoc->params, c->info.calling_ae, sizeof c->info.calling_ae,
                    c->info.called_ae, sizeof c->info.called_ae, nullptr, 0);
    int v = decide(s, c);
    c->st.verdict = v;
    if (v != CTP_SCP_ACCEPT) {
      reject(assoc, v);
      c->st.end = "rejected";
    } else {
      accept_contexts(s, assoc);
      cond = ASC_acknowledgeAssociation(assoc);
      if (cond.bad())
        scp_log(s, 2, "assoc_error", c, "cannot acknowledge: %s", cond.text());
      else
        c->st.end = serve(s, c, assoc);
    }
  }
  {
    std::lock_guard<std::mutex> lk(s->mu);
    if (!assoc) close(c->fd);
    c->fd = -1;
  }
  if (assoc) {
    ASC_dropSCPAssociation(assoc);
    ASC_destroyAssociation(&assoc);
  }
}

void *connection_thread(void *arg) {
  ScpConn *c = static_cast<ScpConn *>(arg);
  ctp_scp *s = c->scp;
  try {
    run_connection(c);
  } catch (...) {
    scp_log(s, 3, "assoc_error", c, "unexpected exception in the association");
  }
  c->st.seconds = now_s() - c->t0;
  if (s->cb.on_close) s->cb.on_close(s->cb.ud, &c->info, &c->st);
  std::lock_guard<std::mutex> lk(s->mu);
  if (c->serving) s->serving--;
  if (c->prev) c->prev->next = c->next;
  else s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  delete c;
  s->nthreads--;
  s->cv.notify_all();
  return nullptr;
}

/* ------------------------------------------------------------------ */
/* Listener                                                             */
/* ------------------------------------------------------------------ */

void start_connection(ctp_scp *s, int fd) {
  ScpConn *c = new (std::nothrow) ScpConn;
  if (!c) {
    close(fd);
    return;
  }
  c->scp = s;
  c->fd = fd;
  c->t0 = now_s();
  /* Responses are small and each waits for the peer: do not let Nagle's
   * algorithm hold them back (DCMTK leaves it on unless TCP_NODELAY is in
   * the environment). */
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  peer_name(fd, &c->info);
  {
    std::lock_guard<std::mutex> lk(s->mu);
    if (s->nthreads >= s->max_assoc + kRejectSlots) {
      delete c;
      close(fd);
      scp_log(s, 2, "assoc_dropped", nullptr,
              "too many connections: closing one at TCP level");
      return;
    }
    c->info.id = s->next_id++;
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->nthreads++;
  }
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t t;
  int rc = pthread_create(&t, &attr, connection_thread, c);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    std::lock_guard<std::mutex> lk(s->mu);
    if (c->next) c->next->prev = c->prev;
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    s->nthreads--;
    close(fd);
    delete c;
    scp_log(s, 3, "assoc_dropped", nullptr, "cannot start a thread: %s",
            strerror(rc));
  }
}

void *listener_thread(void *arg) {
  ctp_scp *s = static_cast<ctp_scp *>(arg);
  for (;;) {
    struct pollfd p[2] = {{s->listen_fd, POLLIN, 0}, {s->wake[0], POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[1].revents) break;
    if (!(p[0].revents & POLLIN)) continue;
    int fd = accept4(s->listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOMEM) {
        scp_log(s, 3, "accept_failed", nullptr, "accept: %s", strerror(errno));
        usleep(100000);
      }
      continue;
    }
    try {
      start_connection(s, fd);
    } catch (...) {
      close(fd);
    }
  }
  return nullptr;
}

/* Binds and listens on an IPv4 or IPv6 address. DCMTK never sees the
 * listening socket, only accepted ones (see receive_association), so the
 * family is ours to choose. "::" is made dual-stack explicitly (IPv4 peers
 * arrive as ::ffff:a.b.c.d), whatever net.ipv6.bindv6only says. */
int bind_listener(ctp_scp *s) {
  struct sockaddr_storage ss;
  socklen_t salen;
  memset(&ss, 0, sizeof ss);
  const char *addr = s->bind_address.empty() ? "0.0.0.0" : s->bind_address.c_str();
  struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons((uint16_t)s->port);
    salen = sizeof *in4;
  } else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)s->port);
    salen = sizeof *in6;
  } else {
    return ctp_seterr(CTP_EINVAL, "bind address '%s' is not an IPv4 or IPv6 address",
                      addr);
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ctp_seterr(CTP_ENET, "socket: %s", strerror(errno));
  int one = 1, zero = 0;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (ss.ss_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr))
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  if (bind(fd, (struct sockaddr *)&ss, salen) != 0 || listen(fd, 64) != 0) {
    int e = errno;
    close(fd);
    return ctp_seterr(CTP_ENET, "cannot listen on %s port %d: %s", addr, s->port,
                      strerror(e));
  }
  socklen_t len = sizeof ss;
  getsockname(fd, (struct sockaddr *)&ss, &len);
  s->port = ntohs(ss.ss_family == AF_INET6 ? in6->sin6_port : in4->sin_port);
  s->listen_fd = fd;
  return 0;
}

/* The DCMTK network object, created without a listening socket of its own
 * (a valid external handle at creation time tells DCMTK not to bind). */
int make_network(ctp_scp *s) {
  std::lock_guard<std::mutex> lk(g_accept_mutex);
  dcmDisableGethostbyaddr.set(OFTrue);
  dcmSocketSendTimeout.set(s->dimse_timeout);
  dcmSocketReceiveTimeout.set(s->dimse_timeout);
  dcmExternalSocketHandle.set(s->listen_fd);
  OFCondition c = ASC_initializeNetwork(NET_ACCEPTOR, 0, s->acse_timeout, &s->net);
  dcmExternalSocketHandle.set(DCMNET_INVALID_SOCKET);
  if (c.bad())
    return ctp_seterr(CTP_ENET, "cannot initialise the DICOM network: %s",
                      c.text());
  return 0;
}

int configure(ctp_scp *s, const ctp_scp_opts *o) {
  if (!o->ae_title || !o->ae_title[0] || strlen(o->ae_title) > 16)
    return ctp_seterr(CTP_EINVAL, "AE title must have 1 to 16 characters");
  if (!o->tmp_dir || !o->tmp_dir[0])
    return ctp_seterr(CTP_EINVAL, "no temporary folder for received datasets");
  if (o->max_pdu < ASC_MINIMUMPDUSIZE || o->max_pdu > ASC_MAXIMUMPDUSIZE)
    return ctp_seterr(CTP_ERANGE, "max PDU %d outside %d..%d", o->max_pdu,
                      ASC_MINIMUMPDUSIZE, ASC_MAXIMUMPDUSIZE);
  if (o->port < 0 || o->port > 65535 || o->max_associations < 1 ||
      o->acse_timeout < 1 || o->dimse_timeout < 1)
    return ctp_seterr(CTP_ERANGE, "SCP port, limits or timeouts out of range");
  s->bind_address = o->bind_address ? o->bind_address : "";
  s->ae_title = o->ae_title;
  s->tmp_dir = o->tmp_dir;
  s->port = o->port;
  s->max_assoc = o->max_associations;
  s->acse_timeout = o->acse_timeout;
  s->dimse_timeout = o->dimse_timeout;
  s->max_pdu = o->max_pdu;
  s->sop_classes.push_back(UID_VerificationSOPClass);
  if (o->sop_classes && o->nsop_classes > 0) {
    for (int i = 0; i < o->nsop_classes; i++)
      s->sop_classes.push_back(o->sop_classes[i]);
  } else {
    for (int i = 0; i < numberOfDcmAllStorageSOPClassUIDs; i++)
      s->sop_classes.push_back(dcmAllStorageSOPClassUIDs[i]);
  }
  for (const std::string &u : s->sop_classes) s->abstract.push_back(u.c_str());
  return 0;
}

int start(ctp_scp **out, const ctp_scp_opts *o, const ctp_scp_callbacks *cb) {
  ctp_scp *s = new ctp_scp;
  s->cb = *cb;
  int rc = configure(s, o);
  if (!rc) rc = ctp_dicom_init();
  if (!rc) rc = bind_listener(s);
  if (!rc && pipe2(s->wake, O_CLOEXEC) != 0)
    rc = ctp_seterr(CTP_EIO, "pipe: %s", strerror(errno));
  if (!rc) rc = make_network(s);
  if (!rc) {
    int e = pthread_create(&s->listener, nullptr, listener_thread, s);
    if (e) rc = ctp_seterr(CTP_ENOMEM, "cannot start the listener: %s", strerror(e));
    else s->listener_started = true;
  }
  if (rc) {
    ctp_scp_free(s);
    return rc;
  }
  *out = s;
  return 0;
}

}  // namespace

extern "C" {

const char *ctp_scp_verdict_str(int v) {
  switch (v) {
    case CTP_SCP_ACCEPT: return "accept";
    case CTP_SCP_REJECT_CALLED_AE: return "called-ae";
    case CTP_SCP_REJECT_CALLING_AE: return "calling-ae";
    case CTP_SCP_REJECT_PEER: return "peer";
    case CTP_SCP_REJECT_BUSY: return "busy";
    case CTP_SCP_REJECT_STOPPING: return "stopping";
    default: return "unknown";
  }
}

int ctp_scp_start(ctp_scp **out, const ctp_scp_opts *opts,
                  const ctp_scp_callbacks *cb) {
  if (!out || !opts || !cb || !cb->on_store)
    return ctp_seterr(CTP_EINVAL, "ctp_scp_start: missing argument");
  *out = nullptr;
  try {
    return start(out, opts, cb);
  } catch (const std::bad_alloc &) {
    return ctp_seterr(CTP_ENOMEM, "out of memory starting the SCP");
  } catch (...) {
    return ctp_seterr(CTP_EDICOM, "cannot start the SCP");
  }
}

int ctp_scp_file_read(const char *path, ctp_scp_file_info *out) {
  if (!path || !out) return ctp_seterr(CTP_EINVAL, "ctp_scp_file_read: argument");
  memset(out, 0, sizeof *out);
  try {
    if (int rc = ctp_dicom_init()) return rc;
    DcmFileFormat ff;
    OFCondition c = ff.loadFile(OFFilename(path), EXS_Unknown, EGL_noChange,
                                4096, ERM_fileOnly);
    if (c.bad())
      return ctp_seterr(CTP_EDICOM, "%s: not a readable DICOM file: %s", path,
                        c.text());
    DcmDataset *ds = ff.getDataset();
    DcmMetaInfo *meta = ff.getMetaInfo();
    struct { char *dst; size_t n; DcmItem *item; DcmTagKey tag; } f[] = {
        {out->sop_class_uid, sizeof out->sop_class_uid, ds, DCM_SOPClassUID},
        {out->sop_instance_uid, sizeof out->sop_instance_uid, ds, DCM_SOPInstanceUID},
        {out->study_instance_uid, sizeof out->study_instance_uid, ds, DCM_StudyInstanceUID},
        {out->series_instance_uid, sizeof out->series_instance_uid, ds, DCM_SeriesInstanceUID},
        {out->transfer_syntax, sizeof out->transfer_syntax, meta, DCM_TransferSyntaxUID},
        {out->source_ae, sizeof out->source_ae, meta, DCM_SourceApplicationEntityTitle},
    };
    for (auto &x : f) {
      std::string v = get_str(x.item, x.tag);
      if (v.size() >= x.n) v.resize(x.n - 1);
      memcpy(x.dst, v.c_str(), v.size() + 1);
    }
    if (!out->sop_class_uid[0] || !out->sop_instance_uid[0] || !out->transfer_syntax[0])
      return ctp_seterr(CTP_EDICOM, "%s: no SOP class, SOP instance or transfer "
                        "syntax UID", path);
    return 0;
  } catch (...) {
    return ctp_seterr(CTP_EDICOM, "%s: cannot read", path);
  }
}

int ctp_scp_port(const ctp_scp *s) { return s ? s->port : -1; }

int ctp_scp_active(const ctp_scp *s) {
  if (!s) return 0;
  std::lock_guard<std::mutex> lk(const_cast<ctp_scp *>(s)->mu);
  return s->nthreads;
}

void ctp_scp_stop(ctp_scp *s) {
  if (!s || s->stopped) return;
  s->stopped = true;
  s->stopping.store(true);
  if (s->listener_started) {
    ssize_t w;
    do w = write(s->wake[1], "x", 1); while (w < 0 && errno == EINTR);
    pthread_join(s->listener, nullptr);
    s->listener_started = false;
  }
  if (s->listen_fd >= 0) close(s->listen_fd);
  s->listen_fd = -1;
}

void ctp_scp_free(ctp_scp *s) {
  if (!s) return;
  try {
    ctp_scp_stop(s);
    s->aborting.store(true);
    {
      std::unique_lock<std::mutex> lk(s->mu);
      for (ScpConn *c = s->conns; c; c = c->next)
        if (c->fd >= 0) shutdown(c->fd, SHUT_RDWR);
      s->cv.wait(lk, [s] { return s->nthreads == 0; });
    }
    if (s->net) ASC_dropNetwork(&s->net);
  } catch (...) {
  }
  for (int i = 0; i < 2; i++)
    if (s->wake[i] >= 0) close(s->wake[i]);
  delete s;
}

}  /* extern "C" */
