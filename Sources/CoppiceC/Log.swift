// The process-wide log callback of coppice.h.
import CCoppiceABI
import Foundation

enum Log {
  private static let lock = NSLock()
  nonisolated(unsafe) private static var callback: coppice_log_callback?
  nonisolated(unsafe) private static var userData: UnsafeMutableRawPointer?

  static func set(_ cb: coppice_log_callback?, _ user: UnsafeMutableRawPointer?) {
    lock.lock()
    callback = cb
    userData = user
    lock.unlock()
  }

  static func emit(_ level: Int32, _ message: String) {
    lock.lock()
    let cb = callback
    let user = userData
    lock.unlock()
    guard let cb else { return }
    message.withCString { cb(level, $0, user) }
  }
}

@_cdecl("coppice_set_log_callback")
public func cSetLogCallback(
  _ callback: coppice_log_callback?, _ userData: UnsafeMutableRawPointer?
) {
  Log.set(callback, userData)
}
