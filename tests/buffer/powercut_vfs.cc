#include "tests/buffer/powercut_vfs.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <vector>

namespace edgeferry::buffer::testing {
namespace {

struct Undo {
  int64_t offset;
  std::string old;  // the bytes that were there (only the part inside the file at the time)
};
struct FileState {
  int64_t synced_size = 0;
  std::vector<Undo> undo;
};

std::mutex g_mu;
std::map<std::string, FileState> g_files;  // by path, guarded by g_mu
std::atomic<int64_t> g_remaining{0};       // ops until the cut; 0 = disarmed
std::atomic<bool> g_cut{false};
std::atomic<bool> g_disk_full{false};
std::atomic<int64_t> g_ops{0};
std::atomic<int64_t> g_bytes_written{0};  // by successful xWrite calls, ever
std::atomic<int64_t> g_wal_started{0};
std::atomic<int64_t> g_wal_completed{0};
std::mutex g_hook_mu;
std::function<void()> g_wal_sync_hook;  // guarded by g_hook_mu
sqlite3_vfs* g_base = nullptr;
sqlite3_vfs g_vfs;

struct File {
  sqlite3_file base;
  sqlite3_file* real;
  std::string path;
  bool is_wal;
};

// Counts a mutating call; true if the power is (now) off.
bool CutNow() {
  g_ops++;
  if (g_cut) return true;
  int64_t r = g_remaining.load();
  if (r > 0 && g_remaining.fetch_sub(1) == 1) g_cut = true;
  return g_cut;
}

sqlite3_file* Real(sqlite3_file* f) { return reinterpret_cast<File*>(f)->real; }

int64_t RealSize(sqlite3_file* real) {
  sqlite3_int64 n = 0;
  real->pMethods->xFileSize(real, &n);
  return n;
}

// Saves what [offset, offset+n) holds now, before it is overwritten or cut off.
void SaveUndo(File* f, int64_t offset, int64_t n) {
  int64_t size = RealSize(f->real);
  std::lock_guard lk(g_mu);
  FileState& fs = g_files[f->path];
  if (offset >= size) return;
  n = std::min(n, size - offset);
  std::string old(n, '\0');
  f->real->pMethods->xRead(f->real, old.data(), static_cast<int>(n), offset);
  fs.undo.push_back({offset, std::move(old)});
}

int xClose(sqlite3_file* f) {
  File* p = reinterpret_cast<File*>(f);
  int rc = p->real->pMethods->xClose(p->real);
  sqlite3_free(p->real);
  p->path.~basic_string();
  return rc;
}
int xRead(sqlite3_file* f, void* buf, int n, sqlite3_int64 off) {
  return Real(f)->pMethods->xRead(Real(f), buf, n, off);
}
int xWrite(sqlite3_file* f, const void* buf, int n, sqlite3_int64 off) {
  if (CutNow()) return SQLITE_IOERR_WRITE;
  if (g_disk_full) return SQLITE_FULL;
  File* p = reinterpret_cast<File*>(f);
  SaveUndo(p, off, n);
  int rc = p->real->pMethods->xWrite(p->real, buf, n, off);
  if (rc == SQLITE_OK) g_bytes_written += n;
  return rc;
}
int xTruncate(sqlite3_file* f, sqlite3_int64 size) {
  if (CutNow()) return SQLITE_IOERR_TRUNCATE;
  File* p = reinterpret_cast<File*>(f);
  int64_t cur = RealSize(p->real);
  if (size < cur) SaveUndo(p, size, cur - size);
  return p->real->pMethods->xTruncate(p->real, size);
}
int xSync(sqlite3_file* f, int) {
  File* p = reinterpret_cast<File*>(f);
  if (p->is_wal) {
    std::function<void()> hook;
    {
      std::lock_guard lk(g_hook_mu);
      hook = g_wal_sync_hook;
    }
    if (hook) hook();
  }
  int64_t index = p->is_wal ? ++g_wal_started : 0;
  if (CutNow()) return SQLITE_IOERR_FSYNC;
  {
    std::lock_guard lk(g_mu);
    FileState& fs = g_files[p->path];
    fs.undo.clear();
    fs.synced_size = RealSize(p->real);
  }
  if (p->is_wal) {
    int64_t cur = g_wal_completed.load();
    while (cur < index && !g_wal_completed.compare_exchange_weak(cur, index)) {
    }
  }
  return SQLITE_OK;
}
int xFileSize(sqlite3_file* f, sqlite3_int64* n) {
  return Real(f)->pMethods->xFileSize(Real(f), n);
}
int xLock(sqlite3_file* f, int l) { return Real(f)->pMethods->xLock(Real(f), l); }
int xUnlock(sqlite3_file* f, int l) { return Real(f)->pMethods->xUnlock(Real(f), l); }
int xCheckReservedLock(sqlite3_file* f, int* r) {
  return Real(f)->pMethods->xCheckReservedLock(Real(f), r);
}
int xFileControl(sqlite3_file* f, int op, void* arg) {
  return Real(f)->pMethods->xFileControl(Real(f), op, arg);
}
int xSectorSize(sqlite3_file* f) { return Real(f)->pMethods->xSectorSize(Real(f)); }
int xDeviceCharacteristics(sqlite3_file* f) {
  return Real(f)->pMethods->xDeviceCharacteristics(Real(f));
}
int xShmMap(sqlite3_file* f, int pg, int sz, int ext, void volatile** pp) {
  return Real(f)->pMethods->xShmMap(Real(f), pg, sz, ext, pp);
}
int xShmLock(sqlite3_file* f, int off, int n, int flags) {
  return Real(f)->pMethods->xShmLock(Real(f), off, n, flags);
}
void xShmBarrier(sqlite3_file* f) { Real(f)->pMethods->xShmBarrier(Real(f)); }
int xShmUnmap(sqlite3_file* f, int del) { return Real(f)->pMethods->xShmUnmap(Real(f), del); }

// Version 2 io methods: no xFetch/xUnfetch, so SQLite never memory-maps the database and every
// write goes through xWrite.
const sqlite3_io_methods kMethods = {
    2,
    xClose,
    xRead,
    xWrite,
    xTruncate,
    xSync,
    xFileSize,
    xLock,
    xUnlock,
    xCheckReservedLock,
    xFileControl,
    xSectorSize,
    xDeviceCharacteristics,
    xShmMap,
    xShmLock,
    xShmBarrier,
    xShmUnmap,
    nullptr,
    nullptr,
};

int xOpen(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  File* p = reinterpret_cast<File*>(f);
  p->base.pMethods = nullptr;
  p->real = static_cast<sqlite3_file*>(sqlite3_malloc(g_base->szOsFile));
  if (p->real == nullptr) return SQLITE_NOMEM;
  std::memset(p->real, 0, g_base->szOsFile);
  int rc = g_base->xOpen(g_base, name, p->real, flags, out_flags);
  if (rc != SQLITE_OK) {
    sqlite3_free(p->real);
    return rc;
  }
  new (&p->path) std::string(name ? name : "");
  p->is_wal = (flags & SQLITE_OPEN_WAL) != 0;
  {
    std::lock_guard lk(g_mu);
    if (!g_files.count(p->path)) g_files[p->path].synced_size = RealSize(p->real);
  }
  p->base.pMethods = &kMethods;
  return SQLITE_OK;
}
int xDelete(sqlite3_vfs*, const char* name, int sync_dir) {
  if (CutNow()) return SQLITE_IOERR_DELETE;
  {
    std::lock_guard lk(g_mu);
    g_files.erase(name);
  }
  return g_base->xDelete(g_base, name, sync_dir);
}
int xAccess(sqlite3_vfs*, const char* name, int flags, int* res) {
  return g_base->xAccess(g_base, name, flags, res);
}
int xFullPathname(sqlite3_vfs*, const char* name, int n, char* out) {
  return g_base->xFullPathname(g_base, name, n, out);
}
void* xDlOpen(sqlite3_vfs*, const char* p) { return g_base->xDlOpen(g_base, p); }
void xDlError(sqlite3_vfs*, int n, char* m) { g_base->xDlError(g_base, n, m); }
void (*xDlSym(sqlite3_vfs*, void* h, const char* s))(void) { return g_base->xDlSym(g_base, h, s); }
void xDlClose(sqlite3_vfs*, void* h) { g_base->xDlClose(g_base, h); }
int xRandomness(sqlite3_vfs*, int n, char* out) { return g_base->xRandomness(g_base, n, out); }
int xSleep(sqlite3_vfs*, int us) { return g_base->xSleep(g_base, us); }
int xCurrentTime(sqlite3_vfs*, double* t) { return g_base->xCurrentTime(g_base, t); }
int xGetLastError(sqlite3_vfs*, int n, char* m) { return g_base->xGetLastError(g_base, n, m); }
int xCurrentTimeInt64(sqlite3_vfs*, sqlite3_int64* t) {
  return g_base->xCurrentTimeInt64(g_base, t);
}

}  // namespace

void RegisterPowerCutVfs() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_base = sqlite3_vfs_find(nullptr);
    g_vfs = sqlite3_vfs{};
    g_vfs.iVersion = 2;
    g_vfs.szOsFile = sizeof(File);
    g_vfs.mxPathname = g_base->mxPathname;
    g_vfs.zName = kPowerCutVfs;
    g_vfs.xOpen = xOpen;
    g_vfs.xDelete = xDelete;
    g_vfs.xAccess = xAccess;
    g_vfs.xFullPathname = xFullPathname;
    g_vfs.xDlOpen = xDlOpen;
    g_vfs.xDlError = xDlError;
    g_vfs.xDlSym = xDlSym;
    g_vfs.xDlClose = xDlClose;
    g_vfs.xRandomness = xRandomness;
    g_vfs.xSleep = xSleep;
    g_vfs.xCurrentTime = xCurrentTime;
    g_vfs.xGetLastError = xGetLastError;
    g_vfs.xCurrentTimeInt64 = xCurrentTimeInt64;
    sqlite3_vfs_register(&g_vfs, 0);
  });
}

void PowerCut::Arm(int64_t n) {
  g_cut = false;
  g_disk_full = false;
  g_remaining = n;
  g_ops = 0;
  g_wal_started = 0;
  g_wal_completed = 0;
}
bool PowerCut::HasCut() { return g_cut; }
int64_t PowerCut::Ops() { return g_ops; }
int64_t PowerCut::BytesWritten() { return g_bytes_written; }
int64_t PowerCut::WalSyncsStarted() { return g_wal_started; }
int64_t PowerCut::LastCompletedWalSync() { return g_wal_completed; }
void PowerCut::SetDiskFull(bool full) { g_disk_full = full; }
void PowerCut::SetWalSyncHook(std::function<void()> hook) {
  std::lock_guard lk(g_hook_mu);
  g_wal_sync_hook = std::move(hook);
}

void PowerCut::Revert() {
  std::lock_guard lk(g_mu);
  for (auto& [path, fs] : g_files) {
    int fd = ::open(path.c_str(), O_WRONLY);
    if (fd < 0) continue;
    for (auto it = fs.undo.rbegin(); it != fs.undo.rend(); ++it) {
      if (::pwrite(fd, it->old.data(), it->old.size(), it->offset) < 0) break;
    }
    if (::ftruncate(fd, fs.synced_size) != 0) {
    }
    ::close(fd);
  }
  g_files.clear();
  g_cut = false;
  g_remaining = 0;
}

}  // namespace edgeferry::buffer::testing
