import CCoppiceKernels

/// Process-wide kernel threading (OpenMP; OpenBLAS is kept single-threaded underneath).
public enum Threads {
  /// Sets the number of kernel threads (values below 1 become 1).
  public static func set(_ n: Int) { ck_set_threads(Int32(max(1, n))) }
  public static var count: Int { Int(ck_get_threads()) }
  public static var availableCores: Int { Int(ck_available_cores()) }
  public static var hasOpenMP: Bool { ck_has_openmp() != 0 }
}
