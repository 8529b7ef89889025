import CCoppiceKernels

/// The instruction sets the C kernels chose on this CPU at run time (no build targets one CPU).
public enum KernelISA {
  /// The sparse kernels' set: "avx512", "avx2", "neon" or "generic" (COPPICE_ISA in the
  /// environment forces a lower one).
  public static var sparse: String { String(cString: ck_sparse_isa_name(ck_sparse_isa())) }
  /// The variant of the per-ISA compiled loops (dense kernels, sparse drivers): "x86-64-v4",
  /// "x86-64-v3", "x86-64", "aarch64" or "baseline".
  public static var dense: String { String(cString: ck_dense_isa_name()) }
  /// OpenBLAS's kernel core, e.g. "SkylakeX", with the core it had fallen back to when the
  /// kernels corrected it (`ck_blas_core_name`), e.g. "SkylakeX (OpenBLAS chose Prescott)".
  public static var blasCore: String {
    let core = String(cString: ck_blas_core_name())
    guard let before = ck_blas_core_corrected_from() else { return core }
    return "\(core) (OpenBLAS chose \(String(cString: before)))"
  }
  /// One line for reports, e.g. "sparse kernels avx512, dense loops x86-64-v4, OpenBLAS
  /// SkylakeX".
  public static var summary: String {
    "sparse kernels \(sparse), dense loops \(dense), OpenBLAS \(blasCore)"
  }
}
