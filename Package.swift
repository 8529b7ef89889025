// swift-tools-version:6.2
// Coppice — sparse training with scheduled grow-and-prune.
//
// Another package can depend on Coppice by version (`.package(url: …, from: "0.1.0")`): from
// tools-version 6.2 on, SwiftPM accepts a version-based dependency whose targets use unsafeFlags
// (before 6.2 it refused them). The only ones left in the library's targets are OpenMP's:
// `-fopenmp` has no safe spelling, and libomp lives outside the default search paths. There is
// no -march and no -O flag: the kernels choose their instruction set at run time (sparse/isa.c,
// ck_clones.h) and SwiftPM's own optimisation level applies.
//
// OpenMP: SwiftPM compiles C with the toolchain's clang, which ships no omp.h, so the manifest
// discovers libomp — Debian/Ubuntu's libomp-dev (any LLVM version), or Homebrew's libomp on
// macOS — or takes the paths from COPPICE_OMP_INCLUDE / COPPICE_OMP_LIB; COPPICE_OPENMP=off
// builds without it (the kernels then run on one thread, and no unsafe flag is left in the
// library's targets). scripts/openmp-paths.sh does the same discovery in shell. SwiftPM caches
// the evaluated manifest by its text and environment, not by the files it looked at: a build
// run before libomp-dev was installed stays without OpenMP (`coppice --version` says so) until
// ~/.cache/org.swift.swiftpm/manifests is removed. The Makefile passes the paths explicitly,
// which keeps its builds out of that trap.
import Foundation
import PackageDescription

/// Compiler and linker flags for OpenMP, or nil when it is off or not found.
func discoverOpenMP() -> (cFlags: [String], linkFlags: [String])? {
  let env = ProcessInfo.processInfo.environment
  if env["COPPICE_OPENMP"] == "off" { return nil }
  #if os(macOS)
    // Apple's clang takes OpenMP pragmas only through the front end (-Xclang -fopenmp).
    let compile = ["-Xclang", "-fopenmp"]
  #else
    let compile = ["-fopenmp"]
  #endif
  func flags(include: String, lib: String) -> (cFlags: [String], linkFlags: [String]) {
    (
      compile + ["-isystem", include],
      ["-L\(lib)", "-Xlinker", "-rpath", "-Xlinker", lib, "-lomp"]
    )
  }
  if let inc = env["COPPICE_OMP_INCLUDE"], let lib = env["COPPICE_OMP_LIB"], !inc.isEmpty,
    !lib.isEmpty
  {
    return flags(include: inc, lib: lib)
  }
  let fm = FileManager.default
  #if os(macOS)
    // Homebrew's keg-only libomp (Apple silicon prefix, then Intel). Not tested here.
    for prefix in ["/opt/homebrew/opt/libomp", "/usr/local/opt/libomp"]
    where fm.fileExists(atPath: "\(prefix)/include/omp.h")
      && fm.fileExists(atPath: "\(prefix)/lib/libomp.dylib")
    {
      return flags(include: "\(prefix)/include", lib: "\(prefix)/lib")
    }
  #else
    let llvmRoots = ((try? fm.contentsOfDirectory(atPath: "/usr/lib")) ?? [])
      .filter { $0.hasPrefix("llvm-") }
      .sorted { (Int($0.dropFirst(5)) ?? 0) > (Int($1.dropFirst(5)) ?? 0) }
    for root in llvmRoots {
      let clangDir = "/usr/lib/\(root)/lib/clang"
      for version in (try? fm.contentsOfDirectory(atPath: clangDir)) ?? [] {
        let inc = "\(clangDir)/\(version)/include"
        let lib = "/usr/lib/\(root)/lib"
        if fm.fileExists(atPath: "\(inc)/omp.h") && fm.fileExists(atPath: "\(lib)/libomp.so") {
          return flags(include: inc, lib: lib)
        }
      }
    }
  #endif
  return nil
}

/// OpenBLAS (cblas.h, libopenblas): Debian/Ubuntu's libopenblas-dev is on the default search
/// paths (no flag). Homebrew's openblas is keg-only, so on macOS its prefix is added when
/// present (COPPICE_OPENBLAS_PREFIX overrides it). Not tested here.
func discoverOpenBLAS() -> (cFlags: [String], linkFlags: [String]) {
  #if os(macOS)
    let env = ProcessInfo.processInfo.environment
    let candidates =
      [env["COPPICE_OPENBLAS_PREFIX"]].compactMap { $0 }
      + ["/opt/homebrew/opt/openblas", "/usr/local/opt/openblas"]
    for prefix in candidates
    where FileManager.default.fileExists(atPath: "\(prefix)/include/cblas.h") {
      let lib = "\(prefix)/lib"
      return (
        ["-isystem", "\(prefix)/include"],
        ["-L\(lib)", "-Xlinker", "-rpath", "-Xlinker", lib]
      )
    }
  #endif
  return ([], [])
}

/// MPI (for distributed training): COPPICE_MPI=off disables it; COPPICE_MPI_INCLUDE and
/// COPPICE_MPI_LIB name the directories; otherwise Debian's Open MPI (or MPICH) is looked for.
/// Without it everything builds and `coppice` says that MPI support is not compiled in.
func discoverMPI() -> (include: String, lib: String)? {
  let env = ProcessInfo.processInfo.environment
  if env["COPPICE_MPI"] == "off" { return nil }
  if let inc = env["COPPICE_MPI_INCLUDE"], let lib = env["COPPICE_MPI_LIB"] { return (inc, lib) }
  let fm = FileManager.default
  for arch in ["x86_64-linux-gnu", "aarch64-linux-gnu"] {
    for flavour in ["openmpi", "mpich"] {
      let root = "/usr/lib/\(arch)/\(flavour)"
      guard fm.fileExists(atPath: "\(root)/include/mpi.h") else { continue }
      for lib in ["\(root)/lib", "/usr/lib/\(arch)"] where fm.fileExists(atPath: "\(lib)/libmpi.so")
      {
        return ("\(root)/include", lib)
      }
    }
  }
  return nil
}

var mpiCFlags: [String] = []
var mpiLinkFlags: [String] = []
if let mpi = discoverMPI() {
  mpiCFlags = ["-DCOPPICE_HAVE_MPI=1", "-isystem", mpi.include]
  mpiLinkFlags = ["-L\(mpi.lib)", "-Xlinker", "-rpath", "-Xlinker", mpi.lib, "-lmpi"]
}

let openBLAS = discoverOpenBLAS()
let openMP = discoverOpenMP()
let kernelCFlags = openBLAS.cFlags + (openMP?.cFlags ?? [])
let kernelLinkFlags = openBLAS.linkFlags + (openMP?.linkFlags ?? [])
/// unsafeFlags only when there are flags, so that a build without OpenMP (on Linux) has none.
func unsafeC(_ flags: [String]) -> [CSetting] { flags.isEmpty ? [] : [.unsafeFlags(flags)] }
func unsafeLink(_ flags: [String]) -> [LinkerSetting] { flags.isEmpty ? [] : [.unsafeFlags(flags)] }

// The layers of the house, each only importing those below it (the compiler enforces this:
// a target can import only what it lists):
//
//   CCoppiceKernels     C: dense and sparse products, convolution, norms, pooling, optimizers
//   CCoppiceFileIO      C: whole-file reads with gzip (zlib), CRC-32
//   CoppiceSparsity     masks, schedules (one file per method), distributions, partitions, the
//                       sparsifier over named buffers — no engine type, no kernel
//   CoppiceEngine       tensors, layers, models, optimizers, data, file formats
//   CoppiceTraining     trainer, the one training run, checkpoints, P-GaP, data parallel
//   Coppice             the Swift API: re-exports the three layers above
//   CoppiceC            the C ABI (include/coppice.h); coppice-cli the command
let package = Package(
  name: "Coppice",
  platforms: [.macOS(.v13)],
  products: [
    .library(name: "Coppice", targets: ["Coppice"]),
    .library(name: "CoppiceShared", type: .dynamic, targets: ["CoppiceC"]),
    .executable(name: "coppice", targets: ["coppice-cli"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0")
  ],
  targets: [
    .target(
      name: "CCoppiceKernels",
      cSettings: [.headerSearchPath(".")] + unsafeC(kernelCFlags),
      linkerSettings: [.linkedLibrary("openblas"), .linkedLibrary("m")]
        + unsafeLink(kernelLinkFlags)
    ),
    .target(name: "CCoppiceFileIO", linkerSettings: [.linkedLibrary("z")]),
    .target(name: "CoppiceSparsity"),
    .target(
      name: "CoppiceEngine", dependencies: ["CoppiceSparsity", "CCoppiceKernels", "CCoppiceFileIO"]),
    .target(
      name: "CoppiceTraining", dependencies: ["CoppiceEngine", "CoppiceSparsity", "CCoppiceFileIO"]),
    .target(
      name: "Coppice", dependencies: ["CoppiceSparsity", "CoppiceEngine", "CoppiceTraining"]),
    .target(
      name: "CCoppiceMPI",
      cSettings: unsafeC(mpiCFlags),
      linkerSettings: unsafeLink(mpiLinkFlags)
    ),
    .target(name: "CoppiceDistributed", dependencies: ["CoppiceTraining", "CCoppiceMPI"]),
    .target(name: "CCoppiceABI"),
    .target(name: "CoppiceC", dependencies: ["Coppice", "CCoppiceABI", "CCoppiceKernels"]),
    .executableTarget(
      name: "coppice-cli",
      dependencies: [
        "Coppice",
        "CoppiceDistributed",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ]
    ),
    .executableTarget(
      name: "coppice-swift-example", dependencies: ["Coppice"], path: "examples/swift"),
    .testTarget(
      name: "CoppiceTests",
      dependencies: ["CoppiceSparsity", "CoppiceEngine", "CoppiceTraining", "CCoppiceKernels"]),
  ]
)
