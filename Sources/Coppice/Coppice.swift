// The Swift API of Coppice: `import Coppice` brings the three layers of the runtime.
//
// - CoppiceSparsity: sparse targets over named weight buffers, the sparsifier, one schedule per
//   method (dense, static, oneshot, gmp, set, rigl, cgap, pgap), distributions, partitions.
// - CoppiceEngine: tensors, layers, the reference models, optimizers, data, file formats.
// - CoppiceTraining: the trainer, the training run (resume, checkpoints, events), P-GaP and
//   data-parallel training.
@_exported import CoppiceEngine
@_exported import CoppiceSparsity
@_exported import CoppiceTraining
