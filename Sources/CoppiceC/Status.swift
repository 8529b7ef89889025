// The status codes and thread-local error message of coppice.h.
import Coppice
import Foundation

/// Mirrors the COPPICE_* status macros of include/coppice.h (values never change).
enum Status: Int32 {
  case ok = 0
  case invalidArgument = 1
  case shapeMismatch = 2
  case notFound = 3
  case ioError = 4
  case invalidFile = 5
  case invalidState = 6
  case outOfMemory = 7
  case unsupported = 8
  case `internal` = 9

  var name: String {
    switch self {
    case .ok: return "COPPICE_OK"
    case .invalidArgument: return "COPPICE_INVALID_ARGUMENT"
    case .shapeMismatch: return "COPPICE_SHAPE_MISMATCH"
    case .notFound: return "COPPICE_NOT_FOUND"
    case .ioError: return "COPPICE_IO_ERROR"
    case .invalidFile: return "COPPICE_INVALID_FILE"
    case .invalidState: return "COPPICE_INVALID_STATE"
    case .outOfMemory: return "COPPICE_OUT_OF_MEMORY"
    case .unsupported: return "COPPICE_UNSUPPORTED"
    case .internal: return "COPPICE_INTERNAL"
    }
  }
}

/// The calling thread's last error message, kept as a C string owned by the library.
enum LastError {
  private static let key: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { free($0) }
    return key
  }()

  static func set(_ message: String) {
    if let old = pthread_getspecific(key) { free(old) }
    pthread_setspecific(key, strdup(message))
  }

  static var pointer: UnsafePointer<CChar>? {
    pthread_getspecific(key).map { UnsafePointer($0.assumingMemoryBound(to: CChar.self)) }
  }

  /// Records `message` and returns `status` as the C status value.
  static func fail(_ status: Status, _ message: String) -> Int32 {
    set(message)
    return status.rawValue
  }
}
