/// Errors the engine reports (bad files, bad arguments). Messages name the thing at fault.
public enum CoppiceError: Error, CustomStringConvertible, Equatable {
  case io(String)
  case invalidFile(path: String, reason: String)
  case invalidArgument(String)
  /// A valid call at the wrong moment (e.g. a P-GaP call on another method, or before start).
  case invalidState(String)
  /// Loss or weights became NaN or infinite during training.
  case diverged(String)
  /// A valid checkpoint of another run (model, configuration or data size differ).
  case runMismatch(path: String, reason: String)

  public var description: String {
    switch self {
    case .io(let message): return message
    case .invalidFile(let path, let reason), .runMismatch(let path, let reason):
      return "\(path): \(reason)"
    case .invalidArgument(let message), .invalidState(let message), .diverged(let message):
      return message
    }
  }
}
