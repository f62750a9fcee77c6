// cli/cmd_inspect.c: placeholder, replaced below.
#include "cli/cli.h"
int cmd_inspect(int argc, char **argv) { (void)argc; (void)argv; return 2; }
