import ArgumentParser
import Coppice
import Foundation

struct Inspect: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Show what a checkpoint, model or sparse export holds: model, run state, and per "
      + "tensor shape, nonzeros and sparsity.")

  @Argument(help: "A .safetensors file written by Coppice (or any safetensors file).")
  var file: String
  @Flag(help: "Print JSON instead of text.") var json = false

  func run() throws {
    let info: FileInspection
    do { info = try FileInspection(path: file) } catch let error as CoppiceError {
      throw ValidationError("\(error)")
    }
    if json {
      print(String(decoding: try info.json(pretty: true), as: UTF8.self))
    } else {
      print(info.text)
    }
  }
}
