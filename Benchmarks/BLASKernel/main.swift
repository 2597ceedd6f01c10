import Forecasting

// Prints the OpenBLAS kernel this CPU gets and whether it is a generic fallback. With `--coretype`, prints only
// the OPENBLAS_CORETYPE that corrects a fallback (nothing when none is needed), for scripts that start processes
// which cannot restart themselves (the test runner, Python anchors): scripts/test.sh and the bench scripts.
let kernel = BLASKernel.current
if CommandLine.arguments.dropFirst().first == "--coretype" {
    if let coreType = kernel.correction { print(coreType) }
} else {
    print(kernel)
}
