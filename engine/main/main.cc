#include <iostream>

#include "engine/cli.h"

int main(int argc, char** argv) { return labfleet::RunCli(argc, argv, std::cout, std::cerr); }
