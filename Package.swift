// swift-tools-version:6.0
// Coppice — sparse training with scheduled grow-and-prune.
//
// The C kernels need OpenMP. SwiftPM compiles C with the toolchain's clang, which ships no
// omp.h, so the manifest discovers Debian's libomp (any LLVM version) or takes the paths from
// COPPICE_OMP_INCLUDE / COPPICE_OMP_LIB. See scripts/openmp-paths.sh for the same logic in shell.
import Foundation
import PackageDescription

func discoverOpenMP() -> (include: String, lib: String)? {
  let env = ProcessInfo.processInfo.environment
  if let inc = env["COPPICE_OMP_INCLUDE"], let lib = env["COPPICE_OMP_LIB"] { return (inc, lib) }
  let fm = FileManager.default
  let llvmRoots = ((try? fm.contentsOfDirectory(atPath: "/usr/lib")) ?? [])
    .filter { $0.hasPrefix("llvm-") }
    .sorted { (Int($0.dropFirst(5)) ?? 0) > (Int($1.dropFirst(5)) ?? 0) }
  for root in llvmRoots {
    let clangDir = "/usr/lib/\(root)/lib/clang"
    for version in (try? fm.contentsOfDirectory(atPath: clangDir)) ?? [] {
      let inc = "\(clangDir)/\(version)/include"
      let lib = "/usr/lib/\(root)/lib"
      if fm.fileExists(atPath: "\(inc)/omp.h") && fm.fileExists(atPath: "\(lib)/libomp.so") {
        return (inc, lib)
      }
    }
  }
  return nil
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

var kernelCFlags: [String] = ["-O3", "-march=x86-64-v3", "-ffp-contract=fast"]
var kernelLinkFlags: [String] = []
if let omp = discoverOpenMP() {
  kernelCFlags += ["-fopenmp", "-isystem", omp.include]
  kernelLinkFlags += ["-L\(omp.lib)", "-Xlinker", "-rpath", "-Xlinker", omp.lib, "-lomp"]
}

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
      cSettings: [
        .headerSearchPath("."),
        .unsafeFlags(kernelCFlags),
      ],
      linkerSettings: [
        .linkedLibrary("openblas"),
        .linkedLibrary("m"),
        .unsafeFlags(kernelLinkFlags),
      ]
    ),
    .target(
      name: "CCoppiceFileIO",
      cSettings: [.unsafeFlags(["-O2"])],
      linkerSettings: [.linkedLibrary("z")]
    ),
    .target(name: "CoppiceSparsity"),
    .target(
      name: "CoppiceEngine", dependencies: ["CoppiceSparsity", "CCoppiceKernels", "CCoppiceFileIO"]),
    .target(
      name: "CoppiceTraining", dependencies: ["CoppiceEngine", "CoppiceSparsity", "CCoppiceFileIO"]),
    .target(
      name: "Coppice", dependencies: ["CoppiceSparsity", "CoppiceEngine", "CoppiceTraining"]),
    .target(
      name: "CCoppiceMPI",
      cSettings: [.unsafeFlags(["-O2"] + mpiCFlags)],
      linkerSettings: [.unsafeFlags(mpiLinkFlags)]
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
