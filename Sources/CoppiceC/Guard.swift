// Turning Swift errors into coppice_status codes, and the handle registry that lets every
// entry point reject NULL, destroyed or foreign handles instead of dereferencing them.
import Coppice
import Foundation

/// An error raised by the C layer itself, with the status it maps to.
struct APIError: Error {
  let status: Status
  let message: String
  init(_ status: Status, _ message: String) {
    self.status = status
    self.message = message
  }
}

/// Runs `body`, returning COPPICE_OK or the status and message of whatever it threw.
func guarded(_ function: String, _ body: () throws -> Void) -> Int32 {
  do {
    try body()
    return Status.ok.rawValue
  } catch let error as APIError {
    return LastError.fail(error.status, "\(function): \(error.message)")
  } catch let error as CoppiceError {
    switch error {
    case .io(let m): return LastError.fail(.ioError, "\(function): \(m)")
    case .invalidFile, .runMismatch:
      return LastError.fail(.invalidFile, "\(function): \(error)")
    case .invalidArgument(let m), .diverged(let m):
      return LastError.fail(.invalidArgument, "\(function): \(m)")
    case .invalidState(let m): return LastError.fail(.invalidState, "\(function): \(m)")
    }
  } catch {
    return LastError.fail(.internal, "\(function): \(error)")
  }
}

/// Live handles, so a stale or garbage pointer is reported, not followed.
enum Handles {
  private static let lock = NSLock()
  nonisolated(unsafe) private static var live: [UInt: String] = [:]

  /// Retains `object` and returns its opaque handle.
  static func register<T: AnyObject>(_ object: T) -> OpaquePointer {
    let pointer = Unmanaged.passRetained(object).toOpaque()
    lock.lock()
    live[UInt(bitPattern: pointer)] = String(describing: T.self)
    lock.unlock()
    return OpaquePointer(pointer)
  }

  /// The object behind `handle`, if it is a live handle of type T.
  static func resolve<T: AnyObject>(_ handle: OpaquePointer?, as type: T.Type, what: String) throws
    -> T
  {
    guard let handle else { throw APIError(.invalidArgument, "\(what) is NULL") }
    let key = UInt(bitPattern: UnsafeRawPointer(handle))
    lock.lock()
    let kind = live[key]
    lock.unlock()
    guard kind == String(describing: T.self) else {
      throw APIError(.invalidArgument, "\(what) is not a live \(what) handle (destroyed?)")
    }
    return Unmanaged<T>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
  }

  /// Releases a handle; NULL and unknown pointers are ignored.
  static func destroy<T: AnyObject>(_ handle: OpaquePointer?, as type: T.Type) {
    guard let handle else { return }
    let key = UInt(bitPattern: UnsafeRawPointer(handle))
    lock.lock()
    // Only a live handle of this type is released; anything else (another type's handle,
    // garbage) is left alone.
    guard live[key] == String(describing: T.self) else {
      lock.unlock()
      return
    }
    live.removeValue(forKey: key)
    lock.unlock()
    Unmanaged<T>.fromOpaque(UnsafeRawPointer(handle)).release()
  }
}

/// A required C string argument. Paths and names cross the ABI as UTF-8: a string with other
/// bytes is refused, never repaired (repairing would save to a different name than asked, and
/// make distinct names such as "w\xff" and "w\xfe" collide).
func string(_ p: UnsafePointer<CChar>?, _ what: String) throws -> String {
  guard let p else { throw APIError(.invalidArgument, "\(what) is NULL") }
  guard let s = String(validatingCString: p) else {
    throw APIError(.invalidArgument, "\(what) is not valid UTF-8 (paths and names must be UTF-8)")
  }
  return s
}

/// An optional C string argument (NULL: nil), UTF-8 as for `string`.
func optionalString(_ p: UnsafePointer<CChar>?, _ what: String) throws -> String? {
  guard let p else { return nil }
  return try string(p, what)
}

/// A required input pointer.
func input<T>(_ p: UnsafePointer<T>?, _ what: String) throws -> UnsafePointer<T> {
  guard let p else { throw APIError(.invalidArgument, "\(what) is NULL") }
  return p
}

/// A required output pointer.
func output<T>(_ p: UnsafeMutablePointer<T>?, _ what: String) throws -> UnsafeMutablePointer<T> {
  guard let p else { throw APIError(.invalidArgument, "\(what) (output) is NULL") }
  return p
}

/// Copies a growable config struct: at most `struct_size` bytes over the defaults, so a host
/// built against an older, smaller struct still works; a struct_size smaller than the first
/// field is rejected.
func readConfig<T>(_ p: UnsafePointer<T>?, defaults: T, what: String) throws -> T {
  guard let p else { throw APIError(.invalidArgument, "\(what) is NULL") }
  let declared = UnsafeRawPointer(p).load(as: Int.self)
  guard declared >= MemoryLayout<Int>.size, declared <= 1 << 20 else {
    throw APIError(
      .invalidArgument, "\(what).struct_size is \(declared); initialise it with its _init function")
  }
  var value = defaults
  withUnsafeMutableBytes(of: &value) { dst in
    dst.copyMemory(
      from: UnsafeRawBufferPointer(start: UnsafeRawPointer(p), count: min(declared, dst.count)))
  }
  return value
}
