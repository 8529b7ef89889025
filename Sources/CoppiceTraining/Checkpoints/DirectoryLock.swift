import CoppiceEngine
import CoppiceSparsity
import Foundation

/// An exclusive lock on a checkpoint directory, held by one training run from its start to its
/// end, so two runs (two processes, or two threads of one) never write and prune one
/// directory's checkpoints at the same time. It is an advisory `flock` on the file
/// ".coppice.lock" in the directory (which holds the owner's process id, for the message the
/// second run gets); the operating system releases it when the run ends, however it ends, so a
/// crashed run never leaves the directory locked. The file itself stays.
public final class DirectoryLock {
  private let fd: Int32

  /// The lock file's name inside a checkpoint directory.
  public static let fileName = ".coppice.lock"

  /// Takes the lock of `directory` (which must exist), or throws `CoppiceError.invalidState`
  /// naming the process that holds it.
  public init(directory: String) throws {
    let path = "\(directory)/\(Self.fileName)"
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
    guard fd >= 0 else {
      throw CoppiceError.io(
        "cannot lock checkpoint directory \(directory): \(String(cString: strerror(errno)))")
    }
    guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
      let busy = errno == EWOULDBLOCK
      let reason = String(cString: strerror(errno))
      var owner = [UInt8](repeating: 0, count: 32)
      let n = pread(fd, &owner, owner.count - 1, 0)
      close(fd)
      guard busy else {
        throw CoppiceError.io("cannot lock checkpoint directory \(directory): \(reason)")
      }
      let pid = String(decoding: owner.prefix(max(0, n)), as: UTF8.self)
        .trimmingCharacters(in: .whitespacesAndNewlines)
      throw CoppiceError.invalidState(
        "checkpoint directory \(directory) is in use by another run"
          + (pid.isEmpty ? "" : " (process \(pid))")
          + "; one run writes to a checkpoint directory at a time")
    }
    let text = Array("\(getpid())\n".utf8)
    if ftruncate(fd, 0) == 0 { _ = pwrite(fd, text, text.count, 0) }
  }

  deinit { close(fd) }
}
