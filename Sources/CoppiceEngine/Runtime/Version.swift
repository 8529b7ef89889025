/// The library version (semantic versioning); matches COPPICE_VERSION_* in coppice.h.
public enum Version {
  public static let major = 0
  public static let minor = 1
  public static let patch = 0
  public static var string: String { "\(major).\(minor).\(patch)" }
}
