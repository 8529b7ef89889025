// swift-tools-version:6.2
// A package that depends on Coppice, the way another project would. Here by path (the
// repository two levels up), so that `make test-swift-package` builds it from this checkout;
// a project elsewhere names a released version instead:
//
//   .package(url: "https://github.com/coppice-ml/coppice", from: "0.1.0")
//
// (SwiftPM 6.2 or newer: Coppice's kernel target passes OpenMP's flags as unsafeFlags, which
// older SwiftPM refuses in a version-based dependency.)
import PackageDescription

let package = Package(
  name: "coppice-dependent",
  platforms: [.macOS(.v13)],
  dependencies: [
    .package(name: "Coppice", path: "../..")
  ],
  targets: [
    .executableTarget(
      name: "coppice-dependent",
      dependencies: [.product(name: "Coppice", package: "Coppice")]
    )
  ]
)
