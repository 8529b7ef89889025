import CoppiceSparsity

/// How the engine binds its layers to sparse training: sparse targets over a model's prunable
/// parameters, and the layers reading their masks from those targets.
extension SparseTarget: MaskSource {}

extension SparseTarget {
  /// A target over an engine parameter's value and gradient (the parameter is kept alive).
  public convenience init(parameter: Parameter, flopsPerWeight: Double = 2) {
    self.init(
      trustedName: parameter.name, shape: parameter.shape, weights: parameter.value.data,
      gradients: parameter.grad.data, flopsPerWeight: flopsPerWeight, storageOwner: parameter)
  }

  /// The engine parameter behind the target, nil for host buffers.
  public var parameter: Parameter? { storageOwner as? Parameter }
}

extension Model {
  /// One target per prunable parameter, in model order, with `flopsPerWeight` from the layer's
  /// forward FLOPs at this model's input shape (2·H_out·W_out for a convolution, 2 for a
  /// linear layer).
  public func sparseTargets() -> [SparseTarget] {
    let flops = Dictionary(
      weightFLOPs.map { ($0.name, $0.flops) }, uniquingKeysWith: { first, _ in first })
    let units = layerUnits
    var blockOf: [String: String] = [:]
    for (i, unit) in units.enumerated() {
      for name in unit.members { blockOf[name] = "unit\(i)" }
    }
    return prunableParameters.map { p in
      let t = SparseTarget(
        parameter: p, flopsPerWeight: flops[p.name].map { $0 / Double(max(1, p.count)) } ?? 2)
      t.block = blockOf[p.name]
      return t
    }
  }

  /// The model's layers grouped into the units GaP partitions keep whole, in model order: a
  /// residual block or nested `Sequential` is one unit; otherwise each conv/linear layer starts
  /// a unit that the following parameterised layers without weights of their own (batch norm)
  /// join. `members` names every parameter and buffer of the unit. Layers before the first
  /// conv/linear layer form a unit of their own.
  public var layerUnits: [(members: [String], weights: [String])] {
    var units: [(members: [String], weights: [String])] = []
    func names(_ layer: Layer) -> [String] {
      var all = layer.parameters.map(\.name)
      let inner: [Layer] =
        (layer as? Sequential)?.allLayers ?? (layer as? ResidualBlock)?.body.allLayers ?? [layer]
      for l in inner { if let s = l as? StatefulLayer { all += s.buffers.map(\.name) } }
      return all
    }
    func weights(_ layer: Layer) -> [String] {
      let inner: [Layer] =
        (layer as? Sequential)?.allLayers ?? (layer as? ResidualBlock)?.body.allLayers ?? [layer]
      return inner.compactMap { ($0 as? Linear)?.weight.name ?? ($0 as? Conv2d)?.weight.name }
    }
    for layer in network.layers {
      let members = names(layer)
      if layer is Sequential || layer is ResidualBlock || layer is Linear || layer is Conv2d {
        units.append((members, weights(layer)))
      } else if !members.isEmpty {
        if units.isEmpty { units.append(([], [])) }
        units[units.count - 1].members += members
      }
    }
    return units
  }

  /// Makes every `Linear` and `Conv2d` whose weight is one of `targets` read its mask from it
  /// (so it can run the sparse kernels). The layers hold the targets weakly: keep the
  /// sparsifier alive. Returns how many layers were attached.
  @discardableResult
  public func attachMasks(_ targets: [SparseTarget]) -> Int {
    var byParameter: [ObjectIdentifier: SparseTarget] = [:]
    for t in targets { if let p = t.parameter { byParameter[ObjectIdentifier(p)] = t } }
    var attached = 0
    for layer in network.allLayers {
      if let linear = layer as? Linear, let t = byParameter[ObjectIdentifier(linear.weight)] {
        linear.maskSource = t
        attached += 1
      } else if let conv = layer as? Conv2d, let t = byParameter[ObjectIdentifier(conv.weight)] {
        conv.maskSource = t
        attached += 1
      }
    }
    return attached
  }
}
