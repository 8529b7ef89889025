// Makes include/coppice.h visible to the Swift implementation (module CCoppiceABI) and checks
// at compile time the layout facts the implementation relies on.
#include "coppice.h"

_Static_assert(sizeof(coppice_status) == sizeof(int), "coppice_status is an int");
_Static_assert(offsetof(coppice_sparsifier_config, struct_size) == 0, "struct_size comes first");
_Static_assert(offsetof(coppice_train_config, struct_size) == 0, "struct_size comes first");
