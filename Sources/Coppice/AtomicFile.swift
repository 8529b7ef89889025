import Foundation

/// Writes files atomically: the data goes to a temporary file in the same directory, which is
/// flushed and then renamed over the destination, so readers see the old or the new file, never
/// a half-written one.
public enum AtomicFile {
  public static func write(_ data: Data, to path: String) throws {
    let url = URL(fileURLWithPath: path)
    let tmp = url.deletingLastPathComponent().appendingPathComponent(
      ".\(url.lastPathComponent).\(getpid()).tmp")
    do {
      try data.write(to: tmp)
      let fd = open(tmp.path, O_RDONLY)
      if fd >= 0 {
        fsync(fd)
        close(fd)
      }
      guard rename(tmp.path, url.path) == 0 else {
        throw CoppiceError.io("cannot write \(path): \(String(cString: strerror(errno)))")
      }
    } catch let error as CoppiceError {
      try? FileManager.default.removeItem(at: tmp)
      throw error
    } catch {
      try? FileManager.default.removeItem(at: tmp)
      throw CoppiceError.io("cannot write \(path): \(error.localizedDescription)")
    }
  }
}
