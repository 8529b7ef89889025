/// A contiguous, row-major float32 tensor that owns 64-byte-aligned memory.
///
/// A reference type so that layers can hand buffers to C kernels and reuse them between steps
/// without copies. `data` stays valid for the tensor's lifetime.
public final class Tensor {
  public private(set) var shape: [Int]
  public let count: Int
  public let data: UnsafeMutablePointer<Float>
  /// The tensor whose memory this one views (`view(as:)`), kept alive by the view; nil when
  /// this tensor owns its memory.
  public let base: Tensor?

  /// A zero-filled tensor of the given shape.
  public init(shape: [Int]) {
    precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
    self.shape = shape
    self.count = shape.reduce(1, *)
    let bytes = max(count, 1) * MemoryLayout<Float>.stride
    let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
    raw.initializeMemory(as: Float.self, repeating: 0, count: max(count, 1))
    self.data = raw.assumingMemoryBound(to: Float.self)
    self.base = nil
  }

  private init(viewing owner: Tensor, shape: [Int]) {
    self.shape = shape
    self.count = owner.count
    self.data = owner.data
    self.base = owner
  }

  /// The same memory under another shape with the same element count (no copy): writes
  /// through either are seen by both.
  public func view(as newShape: [Int]) -> Tensor {
    precondition(newShape.reduce(1, *) == count, "cannot view \(shape) as \(newShape)")
    return Tensor(viewing: base ?? self, shape: newShape)
  }

  /// A tensor holding a copy of `values`.
  public convenience init(shape: [Int], values: [Float]) {
    precondition(values.count == shape.reduce(1, *), "\(values.count) values for shape \(shape)")
    self.init(shape: shape)
    values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: values.count) }
  }

  deinit { if base == nil { UnsafeMutableRawPointer(data).deallocate() } }

  public var buffer: UnsafeMutableBufferPointer<Float> {
    UnsafeMutableBufferPointer(start: data, count: count)
  }

  public var array: [Float] { Array(buffer) }

  public subscript(index: Int) -> Float {
    get { data[index] }
    set { data[index] = newValue }
  }

  /// Whether no element is NaN or infinite.
  public var isFinite: Bool {
    var bad: Float = 0
    for i in 0..<count { bad += data[i] * 0 }  // 0 for finite values, NaN otherwise
    return bad == 0
  }

  public func fill(_ value: Float) { data.update(repeating: value, count: count) }
  public func zero() { fill(0) }

  /// Overwrites the values with `values` (count must match).
  public func assign(_ values: [Float]) {
    precondition(values.count == count, "\(values.count) values for shape \(shape)")
    values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: count) }
  }

  public func copy(from other: Tensor) {
    precondition(other.count == count, "copy of \(other.shape) into \(shape)")
    data.update(from: other.data, count: count)
  }

  public func clone() -> Tensor {
    let t = Tensor(shape: shape)
    t.copy(from: self)
    return t
  }

  /// Changes the shape without touching the data; the element count must not change.
  public func reshape(_ newShape: [Int]) {
    precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
    shape = newShape
  }

  /// Returns `existing` when it already has `shape`, otherwise a new zeroed tensor.
  /// Layers use it to keep their output buffers between steps.
  public static func reuse(_ existing: Tensor?, shape: [Int]) -> Tensor {
    if let existing, existing.shape == shape { return existing }
    return Tensor(shape: shape)
  }
}
