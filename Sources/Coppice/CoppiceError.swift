/// Errors the engine reports (bad files, bad arguments). Messages name the thing at fault.
public enum CoppiceError: Error, CustomStringConvertible, Equatable {
  case io(String)
  case invalidFile(path: String, reason: String)
  case invalidArgument(String)

  public var description: String {
    switch self {
    case .io(let message): return message
    case .invalidFile(let path, let reason): return "\(path): \(reason)"
    case .invalidArgument(let message): return message
    }
  }
}
