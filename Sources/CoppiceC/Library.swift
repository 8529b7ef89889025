// Library-wide entry points of coppice.h: version, errors, threads.
import CCoppiceKernels
import Coppice
import Foundation

nonisolated(unsafe) private let versionString: UnsafePointer<CChar> = {
  UnsafePointer(strdup(Version.string)!)
}()

nonisolated(unsafe) private let emptyString: UnsafePointer<CChar> = UnsafePointer(strdup("")!)
nonisolated(unsafe) private let statusNames: [Int32: UnsafePointer<CChar>] = {
  var names: [Int32: UnsafePointer<CChar>] = [:]
  for (status, name) in Status.names { names[status.rawValue] = UnsafePointer(strdup(name)!) }
  return names
}()
nonisolated(unsafe) private let unknownStatus: UnsafePointer<CChar> = UnsafePointer(
  strdup("unknown status")!)

@_cdecl("coppice_version")
public func coppice_version() -> UnsafePointer<CChar> { versionString }

@_cdecl("coppice_version_number")
public func coppice_version_number() -> Int32 {
  Int32(Version.major * 10000 + Version.minor * 100 + Version.patch)
}

@_cdecl("coppice_last_error")
public func coppice_last_error() -> UnsafePointer<CChar> { LastError.pointer ?? emptyString }

@_cdecl("coppice_status_name")
public func coppice_status_name(_ status: Int32) -> UnsafePointer<CChar> {
  statusNames[status] ?? unknownStatus
}

@_cdecl("coppice_set_threads")
public func coppice_set_threads(_ threads: Int32) -> Int32 {
  guard threads >= 0, threads <= Int32(Threads.maximum) else {
    return LastError.fail(
      .invalidArgument,
      "coppice_set_threads: threads must be in 0...\(Threads.maximum) (0: all cores), got \(threads)"
    )
  }
  Threads.set(threads == 0 ? Threads.availableCores : Int(threads))
  return Status.ok.rawValue
}

@_cdecl("coppice_set_idle_spin")
public func coppice_set_idle_spin(_ milliseconds: Int32) -> Int32 {
  guarded("coppice_set_idle_spin") {
    guard milliseconds >= 0 else {
      throw APIError(.invalidArgument, "milliseconds must be >= 0, got \(milliseconds)")
    }
    guard ck_set_idle_spin(milliseconds) == 1 else {
      throw APIError(.unsupported, "the OpenMP runtime has no spin-wait control")
    }
  }
}

@_cdecl("coppice_set_parallel_runner")
public func coppice_set_parallel_runner(_ runner: ck_parallel_runner?) -> Int32 {
  ck_set_parallel_runner(runner)
  return Status.ok.rawValue
}

@_cdecl("coppice_get_threads")
public func coppice_get_threads() -> Int32 { Int32(Threads.count) }
