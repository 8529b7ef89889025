import CCoppiceKernels

/// The instruction sets the C kernels chose on this CPU at run time (no build targets one CPU).
public enum KernelISA {
  /// The sparse kernels' set: "avx512", "avx2", "neon" or "generic" (COPPICE_ISA in the
  /// environment forces a lower one).
  public static var sparse: String { String(cString: ck_sparse_isa_name(ck_sparse_isa())) }
  /// The variant of the per-ISA compiled loops (dense kernels, sparse drivers): "x86-64-v4",
  /// "x86-64-v3", "x86-64", "aarch64" or "baseline".
  public static var dense: String { String(cString: ck_dense_isa_name()) }
  /// One line for reports, e.g. "sparse kernels avx512, dense loops x86-64-v4".
  public static var summary: String { "sparse kernels \(sparse), dense loops \(dense)" }
}
