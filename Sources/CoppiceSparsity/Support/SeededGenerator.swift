import Foundation

/// A small, fast, seedable generator (xoshiro256**), seeded through SplitMix64, so every
/// initialisation, shuffle and mask is reproducible from one seed on every platform.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
  private var s: (UInt64, UInt64, UInt64, UInt64)

  public init(seed: UInt64) {
    var x = seed
    func splitmix() -> UInt64 {
      x &+= 0x9E37_79B9_7F4A_7C15
      var z = x
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      return z ^ (z >> 31)
    }
    s = (splitmix(), splitmix(), splitmix(), splitmix())
  }

  /// A generator for a named sub-stream, so adding one consumer does not shift the others.
  public init(seed: UInt64, stream: String) {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for byte in stream.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01B3 }
    self.init(seed: seed ^ h)
  }

  /// The four words of the generator's state (for checkpoints).
  public var state: [UInt64] { [s.0, s.1, s.2, s.3] }

  /// A generator continuing from a saved `state`; nil unless it has four words, not all zero.
  public init?(state: [UInt64]) {
    guard state.count == 4, state.contains(where: { $0 != 0 }) else { return nil }
    s = (state[0], state[1], state[2], state[3])
  }

  public mutating func next() -> UInt64 {
    let result = rotl(s.1 &* 5, 7) &* 9
    let t = s.1 << 17
    s.2 ^= s.0
    s.3 ^= s.1
    s.1 ^= s.2
    s.0 ^= s.3
    s.2 ^= t
    s.3 = rotl(s.3, 45)
    return result
  }

  private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

  /// Uniform in [0, 1).
  public mutating func nextUniform() -> Float {
    Float(next() >> 40) * (1.0 / Float(1 << 24))
  }

  /// Standard normal (Box–Muller).
  public mutating func nextNormal() -> Float {
    var u1 = Double(next() >> 11) * (1.0 / Double(1 << 53))
    if u1 < 1e-300 { u1 = 1e-300 }
    let u2 = Double(next() >> 11) * (1.0 / Double(1 << 53))
    return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
  }
}
