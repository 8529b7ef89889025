import XCTest

@testable import CoppiceEngine
@testable import CoppiceSparsity
@testable import CoppiceTraining

final class TensorTests: XCTestCase {
  func testReuseKeepsBufferForSameShape() {
    let a = Tensor(shape: [2, 3])
    XCTAssertTrue(Tensor.reuse(a, shape: [2, 3]) === a)
    XCTAssertFalse(Tensor.reuse(a, shape: [3, 2]) === a)
  }

  func testValuesRoundTrip() {
    let t = Tensor(shape: [2, 2], values: [1, 2, 3, 4])
    XCTAssertEqual(t.array, [1, 2, 3, 4])
    let c = t.clone()
    c[0] = 9
    XCTAssertEqual(t[0], 1)
  }
}
