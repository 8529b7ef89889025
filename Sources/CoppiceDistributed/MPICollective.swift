import CCoppiceMPI
import CoppiceSparsity
import CoppiceTraining

/// `Collective` over MPI's world communicator (Open MPI or MPICH). Sums are reduced on rank 0
/// and broadcast, so every rank gets the same bits. Errors (a rank that died, a broken link)
/// are thrown with MPI's message instead of aborting.
public final class MPICollective: Collective {
  public let rank: Int
  public let size: Int

  /// Whether this build has MPI.
  public static var isAvailable: Bool { cm_available() != 0 }

  /// Whether an MPI launcher started this process with more than one rank.
  public static var launchedWithRanks: Bool { cm_launched_with_ranks() != 0 }

  /// Initialises MPI; throws when MPI support is not compiled in or initialisation fails.
  public init() throws {
    var r: Int32 = 0
    var s: Int32 = 1
    try Self.call { cm_init(&r, &s, $0, $1) }
    rank = Int(r)
    size = Int(s)
  }

  /// Finalises MPI (call once, at the end, on every rank).
  public func finalize() { cm_finalize() }

  public func sum(_ values: UnsafeMutableBufferPointer<Float>) throws {
    guard let base = values.baseAddress, values.count > 0 else { return }
    try Self.call { cm_sum_float(base, Int64(values.count), $0, $1) }
  }

  public func sum(_ values: UnsafeMutableBufferPointer<Double>) throws {
    guard let base = values.baseAddress, values.count > 0 else { return }
    try Self.call { cm_sum_double(base, Int64(values.count), $0, $1) }
  }

  public func broadcast(_ bytes: UnsafeMutableRawBufferPointer, from root: Int) throws {
    guard let base = bytes.baseAddress, bytes.count > 0 else { return }
    try Self.call { cm_broadcast(base, Int64(bytes.count), Int32(root), $0, $1) }
  }

  public func allGather(_ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer)
    throws
  {
    guard receive.count == send.count * size else {
      throw CoppiceError.invalidArgument(
        "all-gather of \(send.count) bytes from \(size) ranks into \(receive.count) bytes")
    }
    guard let s = send.baseAddress, let r = receive.baseAddress, send.count > 0 else { return }
    try Self.call { cm_all_gather(s, Int64(send.count), r, $0, $1) }
  }

  private static func call(_ body: (UnsafeMutablePointer<CChar>, Int) -> Int32) throws {
    var message = [CChar](repeating: 0, count: 512)
    let status = message.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
    guard status == 0 else {
      let text = message.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
      throw CoppiceError.io("distributed run: \(text)")
    }
  }
}
