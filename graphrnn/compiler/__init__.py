"""The compiler: a Network lowered to the IR, then the optimisation passes over Programs."""
