import CCoppiceKernels

/// Sums a layer takes from the images a neighbouring layer produces (`ck_image_observer`): a
/// batch norm's statistics from the convolution before it, its backward's sums from the layer
/// after it. Holds the buffer the sums go to, the kernels' state and observer at fixed
/// addresses, and whether the neighbour gave the observer every image (`taken`).
final class ObservedSums<State> {
  private var buffer = Tensor(shape: [0])
  private let state = UnsafeMutablePointer<State>.allocate(capacity: 1)
  private let observer = UnsafeMutablePointer<ck_image_observer>.allocate(capacity: 1)
  /// Set by the neighbour when it gave the observer every image; cleared by `take`.
  var taken = false
  /// Whether the last `take` returned the sums (for tests and profiles).
  private(set) var used = false

  /// `observe` makes an observer of a state (a `ck_…_observer` function).
  private let observe: (UnsafePointer<State>, UnsafeMutablePointer<ck_image_observer>) -> Void

  init(observe: @escaping (UnsafePointer<State>, UnsafeMutablePointer<ck_image_observer>) -> Void) {
    self.observe = observe
  }

  deinit {
    state.deallocate()
    observer.deallocate()
  }

  /// The observer for the neighbour's next pass: `count` floats of sums, the state `make`
  /// builds around them.
  func offer(count: Int, _ make: (UnsafeMutablePointer<Float>) -> State)
    -> UnsafePointer<ck_image_observer>
  {
    buffer = Tensor.reuse(buffer, shape: [count])
    state.pointee = make(buffer.data)
    observe(state, observer)
    return UnsafePointer(observer)
  }

  /// The sums, when the neighbour took all `count` of them; else nil. Clears `taken`.
  func take(count: Int) -> UnsafePointer<Float>? {
    used = taken && buffer.count == count
    taken = false
    return used ? UnsafePointer(buffer.data) : nil
  }
}
