import CoppiceEngine

/// Collective operations across the processes of a distributed run. `CoppiceDistributed`
/// implements them over MPI; a host with its own communication can implement them too. Every
/// rank must make the same calls in the same order, and every rank must receive the same bits.
public protocol Collective: AnyObject {
  var rank: Int { get }
  var size: Int { get }
  /// Sums over all ranks, in place.
  func sum(_ values: UnsafeMutableBufferPointer<Float>) throws
  func sum(_ values: UnsafeMutableBufferPointer<Double>) throws
  /// Copies `bytes` from rank `root` to every rank.
  func broadcast(_ bytes: UnsafeMutableRawBufferPointer, from root: Int) throws
  /// Every rank's `send` (same size everywhere), concatenated in rank order, on every rank.
  func allGather(_ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer)
    throws
}

extension Collective {
  /// Sums a few numbers over all ranks.
  public func sum(_ values: [Double]) throws -> [Double] {
    var v = values
    try v.withUnsafeMutableBufferPointer { try sum($0) }
    return v
  }

  /// Rank `root`'s bytes, on every rank (sizes are exchanged first).
  public func broadcast(_ data: [UInt8], from root: Int) throws -> [UInt8] {
    var count = [Double(data.count)]
    try count.withUnsafeMutableBytes { try broadcast($0, from: root) }
    var bytes = rank == root ? data : [UInt8](repeating: 0, count: Int(count[0]))
    try bytes.withUnsafeMutableBytes { try broadcast($0, from: root) }
    return bytes
  }

  /// Copies rank `root`'s values of `tensors` to every rank.
  public func broadcast(_ tensors: [Tensor], from root: Int) throws {
    for t in tensors {
      try broadcast(UnsafeMutableRawBufferPointer(t.buffer), from: root)
    }
  }

  /// Whether any rank says yes.
  public func any(_ flag: Bool) throws -> Bool { try sum([flag ? 1 : 0])[0] > 0 }
}
