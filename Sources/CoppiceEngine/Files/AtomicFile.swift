import CoppiceSparsity
import Foundation

/// Writes files atomically: the data goes to a temporary file in the same directory, which is
/// flushed to disk (fsync) and then renamed over the destination, and the directory is synced,
/// so readers see the old or the new file, never a half-written one — also after a crash,
/// a kill or a full disk.
public enum AtomicFile {
  public static func write(_ data: Data, to path: String) throws {
    let url = URL(fileURLWithPath: path)
    let directory = url.deletingLastPathComponent().path
    let tmp = "\(directory)/.\(url.lastPathComponent).\(getpid()).tmp"
    func failure(_ what: String) -> CoppiceError {
      .io("cannot write \(path): \(what): \(String(cString: strerror(errno)))")
    }
    let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw failure("cannot create \(tmp)") }
    var ok = false
    defer {
      if !ok { unlink(tmp) }
    }
    let written = data.withUnsafeBytes { raw -> Bool in
      var offset = 0
      while offset < raw.count {
        let n = Foundation.write(fd, raw.baseAddress! + offset, raw.count - offset)
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { return false }
        offset += n
      }
      return true
    }
    guard written else {
      let error = failure("writing")
      close(fd)
      throw error
    }
    guard fsync(fd) == 0 else {
      let error = failure("flushing")
      close(fd)
      throw error
    }
    guard close(fd) == 0 else { throw failure("closing") }
    guard rename(tmp, path) == 0 else { throw failure("renaming") }
    ok = true
    let dirfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if dirfd >= 0 {
      fsync(dirfd)
      close(dirfd)
    }
  }
}
