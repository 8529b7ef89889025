import CCoppiceKernels

/// Process-wide kernel threading (OpenMP; OpenBLAS is kept single-threaded underneath).
public enum Threads {
  /// The most kernel threads accepted: far above any core count here, far below what makes
  /// per-thread work sizes or OpenMP's thread stacks overflow.
  public static let maximum = 1024

  /// Sets the number of kernel threads, clamped to 1...`maximum` (front ends reject values
  /// outside that range with a message first).
  public static func set(_ n: Int) { ck_set_threads(Int32(min(max(1, n), maximum))) }
  public static var count: Int { Int(ck_get_threads()) }
  public static var availableCores: Int { Int(ck_available_cores()) }
  public static var hasOpenMP: Bool { ck_has_openmp() != 0 }
}
