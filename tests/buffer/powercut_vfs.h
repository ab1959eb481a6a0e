// A SQLite VFS shim for power-cut tests (the idea of SQLite's test6.c and LevelDB's
// fault_injection_test): it wraps the default unix VFS, passes every call through, and keeps an
// undo log of everything written since each file's last xSync. A simulated power cut
// (Arm(n): before the n-th write/truncate/sync/delete) makes every later write fail like a dead
// disk; Revert() then puts each file back to its last synced state, throwing the unsynced
// writes away. xSync itself does not call fsync(2): durability is what this shim says it is,
// which keeps hundreds of cut points fast.
//
// Simplifications, on purpose: file creation and deletion count as durable at once (the unix
// VFS fsyncs the directory for new journals anyway); unsynced writes are dropped whole, not torn.
//
// Not thread-safe against concurrent Revert(): call Revert() only after every connection that
// used the VFS is closed.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace edgeferry::buffer::testing {

inline constexpr const char* kPowerCutVfs = "powercut";

// Registers the VFS (idempotent). Not the default VFS: pass OpenOptions{.vfs = kPowerCutVfs}.
void RegisterPowerCutVfs();

class PowerCut {
 public:
  // Cut before the n-th mutating call from now (n >= 1); 0 disarms. Also clears "disk full".
  static void Arm(int64_t n);
  static bool HasCut();
  // Discards every unsynced write of every file the VFS touched and forgets them all. Call
  // after all connections are closed.
  static void Revert();
  // Mutating calls (write/truncate/sync/delete) seen since the last Arm or Revert.
  static int64_t Ops();
  // Bytes written through the VFS (every file), ever: what the buffer costs the storage.
  static int64_t BytesWritten();
  // Number of xSync calls on "-wal" files that have started / the highest start index of one
  // that completed. A commit acknowledged when started() was S is durable once a sync whose
  // start index is > S completed.
  static int64_t WalSyncsStarted();
  static int64_t LastCompletedWalSync();
  // While set, every write fails with SQLITE_FULL (ENOSPC), as on a full file system.
  static void SetDiskFull(bool full);
  // Called at the start of every xSync of a "-wal" file, on the thread that syncs (the buffer's
  // writer), so that a test can hold the writer inside a commit. Empty: none. The hook must not
  // call into SQLite.
  static void SetWalSyncHook(std::function<void()> hook);
};

}  // namespace edgeferry::buffer::testing
