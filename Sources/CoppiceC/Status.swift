// The status codes and thread-local error message of coppice.h.
import CCoppiceABI
import Foundation

/// A status code of include/coppice.h. The values are the header's COPPICE_* macros (imported
/// from it, never copied), so the header stays the one source of the numbers.
struct Status: Equatable {
  let rawValue: Int32

  static let ok = Status(rawValue: COPPICE_OK)
  static let invalidArgument = Status(rawValue: COPPICE_INVALID_ARGUMENT)
  static let shapeMismatch = Status(rawValue: COPPICE_SHAPE_MISMATCH)
  static let notFound = Status(rawValue: COPPICE_NOT_FOUND)
  static let ioError = Status(rawValue: COPPICE_IO_ERROR)
  static let invalidFile = Status(rawValue: COPPICE_INVALID_FILE)
  static let invalidState = Status(rawValue: COPPICE_INVALID_STATE)
  static let outOfMemory = Status(rawValue: COPPICE_OUT_OF_MEMORY)
  static let unsupported = Status(rawValue: COPPICE_UNSUPPORTED)
  static let `internal` = Status(rawValue: COPPICE_INTERNAL)

  /// Every code with its macro's name, for coppice_status_name.
  static let names: [(status: Status, name: String)] = [
    (ok, "COPPICE_OK"), (invalidArgument, "COPPICE_INVALID_ARGUMENT"),
    (shapeMismatch, "COPPICE_SHAPE_MISMATCH"), (notFound, "COPPICE_NOT_FOUND"),
    (ioError, "COPPICE_IO_ERROR"), (invalidFile, "COPPICE_INVALID_FILE"),
    (invalidState, "COPPICE_INVALID_STATE"), (outOfMemory, "COPPICE_OUT_OF_MEMORY"),
    (unsupported, "COPPICE_UNSUPPORTED"), (`internal`, "COPPICE_INTERNAL"),
  ]
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
