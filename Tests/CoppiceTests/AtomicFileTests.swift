import Foundation
import XCTest

@testable import CoppiceEngine
@testable import CoppiceSparsity

/// AtomicFile: concurrent saves to one path, symbolic links, special files, long names.
final class AtomicFileTests: XCTestCase {
  var directory: String!

  override func setUpWithError() throws {
    directory =
      FileManager.default.temporaryDirectory.appendingPathComponent(
        "coppice-atomic-\(UUID().uuidString)"
      ).path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(atPath: directory)
  }

  /// Two threads save different contents to one path while a third reads it: every save
  /// succeeds and every read sees one whole version (the temporary files used to be named by
  /// process only, so the threads shared one and renames failed).
  func testConcurrentSavesToOnePathCompleteAndReadersSeeWholeFiles() throws {
    let path = "\(directory!)/model.bin"
    let versions = [Data(repeating: 0xA1, count: 200_000), Data(repeating: 0xB2, count: 150_000)]
    try AtomicFile.write(versions[0], to: path)
    let deadline = Date().addingTimeInterval(1.5)
    final class Tally: @unchecked Sendable {
      let lock = NSLock()
      var saves = 0
      var failures: [String] = []
      var reads = 0
      var torn = 0
      func add(_ body: (Tally) -> Void) {
        lock.lock()
        body(self)
        lock.unlock()
      }
    }
    let tally = Tally()
    DispatchQueue.concurrentPerform(iterations: 3) { worker in
      while Date() < deadline {
        if worker < 2 {
          do {
            try AtomicFile.write(versions[worker], to: path)
            tally.add { $0.saves += 1 }
          } catch {
            tally.add { $0.failures.append("\(error)") }
          }
        } else {
          let data = FileManager.default.contents(atPath: path) ?? Data()
          tally.add {
            $0.reads += 1
            if !versions.contains(data) { $0.torn += 1 }
          }
        }
      }
    }
    XCTAssertEqual(
      tally.failures, [],
      "\(tally.failures.count) of \(tally.saves + tally.failures.count) saves failed")
    XCTAssertEqual(tally.torn, 0, "\(tally.torn) of \(tally.reads) reads saw a partial file")
    XCTAssertGreaterThan(tally.saves, 10)
    let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory)
    XCTAssertEqual(leftovers, ["model.bin"])
  }

  /// A save through a symbolic link replaces the file it points to; the link stays.
  func testSymbolicLinksAreFollowed() throws {
    let target = "\(directory!)/real.bin"
    let link = "\(directory!)/link.bin"
    try AtomicFile.write(Data([1, 2, 3]), to: target)
    XCTAssertEqual(symlink("real.bin", link), 0)
    try AtomicFile.write(Data([4, 5]), to: link)
    XCTAssertEqual(FileManager.default.contents(atPath: target), Data([4, 5]))
    let attributes = try FileManager.default.attributesOfItem(atPath: link)
    XCTAssertEqual(attributes[.type] as? FileAttributeType, .typeSymbolicLink)
    XCTAssertEqual(symlink("missing/nowhere.bin", "\(directory!)/dangling.bin"), 0)
    XCTAssertThrowsError(try AtomicFile.write(Data([1]), to: "\(directory!)/dangling.bin")) {
      XCTAssertTrue("\($0)".contains("symbolic link"), "\($0)")
    }
  }

  /// Directories, FIFOs (and devices, sockets) are refused and left as they are.
  func testSpecialFilesAreRefusedAndKept() throws {
    let fifo = "\(directory!)/pipe"
    XCTAssertEqual(mkfifo(fifo, 0o600), 0)
    XCTAssertThrowsError(try AtomicFile.write(Data([1]), to: fifo)) {
      XCTAssertTrue("\($0)".contains("a FIFO, not a regular file"), "\($0)")
    }
    let attributes = try FileManager.default.attributesOfItem(atPath: fifo)
    XCTAssertEqual(attributes[.type] as? FileAttributeType, .typeUnknown)  // a FIFO
    let sub = "\(directory!)/sub"
    try FileManager.default.createDirectory(atPath: sub, withIntermediateDirectories: false)
    XCTAssertThrowsError(try AtomicFile.write(Data([1]), to: sub)) {
      XCTAssertTrue("\($0)".contains("a directory"), "\($0)")
    }
    XCTAssertThrowsError(try AtomicFile.write(Data([1]), to: "\(sub)/")) {
      XCTAssertTrue("\($0)".contains("a directory"), "\($0)")
    }
    XCTAssertEqual(
      try FileManager.default.contentsOfDirectory(atPath: directory).sorted(), ["pipe", "sub"])
  }

  /// Reading a directory or a FIFO is a clear error (a FIFO used to block forever; a
  /// directory gave "NSCocoaErrorDomain error 256").
  func testReadingADirectoryOrAFIFOIsAClearError() throws {
    let fifo = "\(directory!)/pipe"
    XCTAssertEqual(mkfifo(fifo, 0o600), 0)
    for (path, kind) in [(directory!, "a directory"), (fifo, "a special file")] {
      XCTAssertThrowsError(try SafeTensors.read(path: path)) {
        XCTAssertTrue("\($0)".contains("it is \(kind)"), "\($0)")
      }
    }
  }

  /// A 255-byte file name (the usual limit) can be written: the temporary name is shortened.
  func testLongestFileNameCanBeWritten() throws {
    let name = String(repeating: "é", count: 100) + String(repeating: "m", count: 55)
    XCTAssertEqual(name.utf8.count, 255)
    let path = "\(directory!)/\(name)"
    try AtomicFile.write(Data([7]), to: path)
    XCTAssertEqual(FileManager.default.contents(atPath: path), Data([7]))
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory), [name])
  }

  /// Replacing a file keeps its permission bits.
  func testReplacingKeepsPermissions() throws {
    let path = "\(directory!)/private.bin"
    try AtomicFile.write(Data([1]), to: path)
    XCTAssertEqual(chmod(path, 0o600), 0)
    try AtomicFile.write(Data([2]), to: path)
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, 0o600)
  }
}
