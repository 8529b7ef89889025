import CoppiceSparsity
import Foundation

/// Writes files atomically: the data goes to a temporary file in the same directory, which is
/// flushed to disk (fsync) and then renamed over the destination, and the directory is synced,
/// so readers see the old or the new file, never a half-written one — also after a crash,
/// a kill or a full disk.
///
/// Every call gets its own temporary file (process id, thread id and a per-process counter in
/// its name, created with O_EXCL), so threads and processes saving to one path at the same time
/// never share one: each save completes or fails on its own, and the last rename wins.
///
/// What the destination may be:
/// - missing or a regular file: it is created or replaced (keeping the old file's permissions);
/// - a symbolic link: the link is followed and the file it points to is replaced, the link
///   stays (a link whose target cannot be resolved is an error);
/// - a directory, device, FIFO or socket: refused with an error, nothing is changed.
///
/// File names of any length the file system allows (255 bytes) can be written: the temporary
/// name shortens the destination's name as needed.
public enum AtomicFile {
  public static func write(_ data: Data, to path: String) throws {
    let (target, mode) = try destination(path)
    let (directory, name) = split(target)
    guard !name.isEmpty else { throw CoppiceError.io("cannot write \(path): it is a directory") }
    func failure(_ what: String) -> CoppiceError {
      .io("cannot write \(path): \(what): \(String(cString: strerror(errno)))")
    }
    var tmp = ""
    var fd: Int32 = -1
    repeat {
      tmp = "\(directory)/\(temporaryName(for: name))"
      fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
    } while fd < 0 && errno == EEXIST
    guard fd >= 0 else { throw failure("cannot create a temporary file in \(directory)") }
    var ok = false
    defer {
      if !ok { unlink(tmp) }
    }
    if let mode { fchmod(fd, mode) }
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
    guard rename(tmp, target) == 0 else { throw failure("renaming") }
    ok = true
    let dirfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if dirfd >= 0 {
      fsync(dirfd)
      close(dirfd)
    }
  }

  /// The file a save to `path` replaces (symbolic links followed) and the permission bits of
  /// the file it replaces (nil when there is none); throws for anything but a regular file.
  static func destination(_ path: String) throws -> (path: String, mode: mode_t?) {
    guard !path.isEmpty else { throw CoppiceError.io("cannot write an empty path") }
    var target = path
    var info = stat()
    if lstat(path, &info) != 0 {
      guard errno == ENOENT else {
        throw CoppiceError.io("cannot write \(path): \(String(cString: strerror(errno)))")
      }
      return (path, nil)
    }
    if info.st_mode & S_IFMT == S_IFLNK {
      guard let resolved = realpath(path, nil) else {
        throw CoppiceError.io(
          "cannot write \(path): it is a symbolic link whose target cannot be resolved "
            + "(\(String(cString: strerror(errno))))")
      }
      defer { free(resolved) }
      target = String(cString: resolved)
      guard stat(target, &info) == 0 else {
        throw CoppiceError.io("cannot write \(path): \(String(cString: strerror(errno)))")
      }
    }
    guard info.st_mode & S_IFMT == S_IFREG else {
      throw CoppiceError.io("cannot write \(path): it is \(kind(info.st_mode)), not a regular file")
    }
    return (target, info.st_mode & 0o7777)
  }

  /// A description of a non-regular file type.
  static func kind(_ mode: mode_t) -> String {
    switch mode & S_IFMT {
    case S_IFDIR: return "a directory"
    case S_IFCHR, S_IFBLK: return "a device"
    case S_IFIFO: return "a FIFO"
    case S_IFSOCK: return "a socket"
    default: return "a special file"
    }
  }

  /// (directory, file name) of `path`, split at its last "/".
  static func split(_ path: String) -> (String, String) {
    guard let slash = path.lastIndex(of: "/") else { return (".", path) }
    let directory = String(path[..<slash])
    return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
  }

  private static let lock = NSLock()
  nonisolated(unsafe) private static var counter = 0

  /// ".<name>.<pid>-<thread>-<n>.tmp", unique to this call in this process, with `name`
  /// shortened (at a character boundary) so the whole stays within 255 bytes.
  static func temporaryName(for name: String) -> String {
    lock.lock()
    counter += 1
    let n = counter
    lock.unlock()
    let thread = String(UInt(bitPattern: Int(bitPattern: pthread_self())), radix: 36)
    let suffix = ".\(getpid())-\(thread)-\(n).tmp"
    var bytes = Array(name.utf8)
    let room = 255 - 1 - suffix.utf8.count
    if bytes.count > room {
      var cut = room
      while cut > 0 && bytes[cut] & 0xC0 == 0x80 { cut -= 1 }
      bytes = Array(bytes[..<cut])
    }
    return "." + String(decoding: bytes, as: UTF8.self) + suffix
  }
}
