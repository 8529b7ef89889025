/// One thing a schedule did, in structured form (the log line says the same in words): what
/// kind of change, at which step, to which partition and layers, and the sparsity of those
/// layers right after it. Hosts read them from `Sparsifier.events(since:)` or, through the C
/// ABI, `coppice_sparsifier_next_event`.
public struct SparsityEvent: Equatable, Sendable {
  /// Kinds, numbered as the C ABI's COPPICE_EVENT_* constants (never renumbered).
  public enum Kind: Int32, Sendable, CaseIterable {
    /// Initial masks set (all targets).
    case start = 1
    /// A GaP partition pruned back to its target (or budget).
    case prune = 2
    /// A GaP partition grown (made dense).
    case grow = 3
    /// The final GaP prune; masks frozen afterwards.
    case finalPrune = 4
    /// A SET/RigL drop-and-grow update.
    case maskUpdate = 5
    /// A one-shot or GMP magnitude prune.
    case magnitudePrune = 6
    /// A P-GaP worker began (its partition dense).
    case workerBegin = 7
    /// A P-GaP round was assembled and pruned.
    case roundMerged = 8
    /// Masks are frozen from here on.
    case frozen = 9

    public var name: String {
      switch self {
      case .start: return "start"
      case .prune: return "prune"
      case .grow: return "grow"
      case .finalPrune: return "final_prune"
      case .maskUpdate: return "mask_update"
      case .magnitudePrune: return "magnitude_prune"
      case .workerBegin: return "worker_begin"
      case .roundMerged: return "round_merged"
      case .frozen: return "frozen"
      }
    }
  }

  public let kind: Kind
  /// Completed optimizer steps when it happened (0: before the first step).
  public let step: Int
  /// The GaP partition (or P-GaP worker) concerned, nil when none.
  public let partition: Int?
  /// The names of the layers concerned, in registration order.
  public let layers: [String]
  /// The sparsity over those layers right after the event.
  public let sparsity: Double

  public init(kind: Kind, step: Int, partition: Int?, layers: [String], sparsity: Double) {
    self.kind = kind
    self.step = step
    self.partition = partition
    self.layers = layers
    self.sparsity = sparsity
  }
}

extension SparsityContext {
  /// Records a structured event over the targets at `indices` (their sparsity now).
  public func record(
    _ kind: SparsityEvent.Kind, step: Int, partition: Int? = nil, targets indices: [Int]
  ) {
    let total = indices.reduce(0) { $0 + targets[$1].count }
    let zeros = indices.reduce(0) { $0 + targets[$1].count - targets[$1].nonzeros }
    structuredEvents.append(
      SparsityEvent(
        kind: kind, step: step, partition: partition, layers: indices.map { targets[$0].name },
        sparsity: total == 0 ? 0 : Double(zeros) / Double(total)))
  }
}
