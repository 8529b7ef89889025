/// The sparse-training methods, by their command-line names.
public enum SparsityMethod: String, Sendable, CaseIterable, Codable {
  case dense
  case staticSparse = "static"
  case oneshot
  case gmp
  case set
  case rigl
  case cgap
  case pgap

  /// Parses a name string, with an error listing the valid names.
  public init(parsing name: String) throws {
    guard let method = SparsityMethod(rawValue: name.lowercased()) else {
      throw CoppiceError.invalidArgument(
        "unknown sparsity method \(name); expected one of "
          + SparsityMethod.allCases.map(\.rawValue).joined(separator: ", "))
    }
    self = method
  }

  /// The distribution used when none is given: ERK for RigL (its paper's default), uniform
  /// otherwise.
  public var defaultDistribution: SparsityDistribution {
    self == .rigl ? .erk() : .uniform
  }
}
