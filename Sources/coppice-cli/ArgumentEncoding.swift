import Foundation

/// Command-line arguments must be UTF-8: Swift would decode other bytes as U+FFFD, so a path
/// such as "model\xe9.cpx" would be written under another name or reported missing. Such an
/// argument is refused before parsing (exit status 64, like other usage errors).
enum ArgumentEncoding {
  /// The position (from 1) and a printable form of the first argument that is not UTF-8.
  static func firstInvalid() -> (index: Int, text: String)? {
    for i in 1..<Int(CommandLine.argc) {
      guard let p = CommandLine.unsafeArgv[i], String(validatingCString: p) == nil else {
        continue
      }
      return (i, String(cString: p))
    }
    return nil
  }

  /// Exits with status 64 and a message when an argument is not UTF-8.
  static func requireUTF8() {
    guard let bad = firstInvalid() else { return }
    FileHandle.standardError.write(
      Data(
        ("Error: argument \(bad.index) (\"\(bad.text)\") is not valid UTF-8; coppice takes "
          + "paths and names as UTF-8\n").utf8))
    exit(64)
  }
}
