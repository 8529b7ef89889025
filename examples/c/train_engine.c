/* Train a sparse model with C-GaP at 90% sparsity through the C API of the engine, then write
 * it for inference with its sparse weights in CSR form and load that back.
 *   train_engine [train_limit [test_limit [model [epochs [checkpoint_dir]]]]]
 *   (defaults: 10000 2000 mlp 4, no checkpoints). With checkpoint_dir, a checkpoint is written
 *   there after every epoch and a second run continues from the newest one (resume).
 * Fashion-MNIST is read from /usr/share/datasets/fashion-mnist (COPPICE_DATA overrides). */
#include <coppice.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(call)                                                                     \
  do {                                                                                  \
    coppice_status status_ = (call);                                                    \
    if (status_ != COPPICE_OK) {                                                        \
      fprintf(stderr, "%s failed: %s: %s\n", #call, coppice_status_name(status_),      \
              coppice_last_error());                                                    \
      goto done;                                                                        \
    }                                                                                   \
  } while (0)

static int on_epoch(int epoch, double loss, double accuracy, double sparsity, double seconds,
                    void *user_data) {
  (void)user_data;
  printf("epoch %d  loss %.4f  test accuracy %.2f%%  sparsity %.4f  %.1fs\n", epoch, loss,
         accuracy, sparsity, seconds);
  fflush(stdout);
  return 0; /* non-zero would stop training */
}

int main(int argc, char **argv) {
  int64_t train_limit = argc > 1 ? atoll(argv[1]) : 10000;
  int64_t test_limit = argc > 2 ? atoll(argv[2]) : 2000;
  const char *model_name = argc > 3 ? argv[3] : "mlp", *data = getenv("COPPICE_DATA");
  const char *checkpoint_dir = argc > 5 ? argv[5] : NULL;
  coppice_dataset *train = NULL, *test = NULL;
  coppice_model *model = NULL, *loaded = NULL;
  coppice_checkpoint_config checkpoints;
  int64_t export_bytes = 0, dense_bytes = 0;
  double accuracy = 0;
  char export_path[4096];
  coppice_train_config config;
  coppice_train_result result;
  int64_t parameters = 0, train_count = 0, test_count = 0;
  int exit_code = 1;

  printf("coppice %s\n", coppice_version());
  CHECK(coppice_dataset_load_idx(data, "train", train_limit, &train));
  CHECK(coppice_dataset_load_idx(data, "t10k", test_limit, &test));
  CHECK(coppice_dataset_count(train, &train_count));
  CHECK(coppice_dataset_count(test, &test_count));
  CHECK(coppice_model_create(model_name, 1, 10, &model));
  CHECK(coppice_model_parameter_count(model, &parameters));
  printf("%s: %lld parameters; %lld train / %lld test samples\n", model_name,
         (long long)parameters, (long long)train_count, (long long)test_count);

  coppice_train_config_init(&config);
  config.epochs = argc > 4 ? atoi(argv[4]) : 4;
  config.sparsity.method = "cgap";
  config.sparsity.sparsity = 0.9;
  config.sparsity.rounds = 1;
  config.on_epoch = on_epoch;
  if (checkpoint_dir) {
    coppice_checkpoint_config_init(&checkpoints);
    checkpoints.directory = checkpoint_dir;
    checkpoints.resume = 1; /* continue from the newest checkpoint there, if any */
    CHECK(coppice_train_checkpointed(model, train, test, &config, &checkpoints, &result));
  } else {
    CHECK(coppice_train(model, train, test, &config, &result));
  }
  printf("C-GaP at 90%%: test accuracy %.2f%%, sparsity %.4f, %d epochs in %.1fs\n",
         result.test_accuracy, result.sparsity, result.epochs, result.train_seconds);

  /* The trained model for inference: CSR weights; loading it attaches the masks, so the
   * sparse layers run the sparse kernels. */
  snprintf(export_path, sizeof export_path, "%s/%s-cgap90.safetensors",
           checkpoint_dir ? checkpoint_dir : "/tmp", model_name);
  CHECK(coppice_model_export(model, export_path, &export_bytes, &dense_bytes));
  CHECK(coppice_model_create(model_name, 2, 10, &loaded));
  CHECK(coppice_model_load(loaded, export_path));
  CHECK(coppice_evaluate(loaded, test, &accuracy));
  printf("export %s: %lld bytes (%lld dense); reloaded model: test accuracy %.2f%%\n",
         export_path, (long long)export_bytes, (long long)dense_bytes, accuracy);
  exit_code = 0;
done:
  coppice_model_destroy(loaded);
  coppice_model_destroy(model);
  coppice_dataset_destroy(test);
  coppice_dataset_destroy(train);
  return exit_code;
}
