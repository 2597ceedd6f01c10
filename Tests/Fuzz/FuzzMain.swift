import Foundation
import FuzzTargets

#if FUZZING
    // Built by scripts/fuzz.sh with `-sanitize=fuzzer -DFUZZING`: libFuzzer supplies `main` and calls this for
    // every input; CANDLECAST_FUZZ_TARGET picks the target (envelope, kraken-body, csv-row).
    let selectedTarget: FuzzTarget = {
        let name = ProcessInfo.processInfo.environment["CANDLECAST_FUZZ_TARGET"] ?? ""
        guard let target = FuzzTarget(rawValue: name) else {
            fatalError("CANDLECAST_FUZZ_TARGET must be one of \(FuzzTarget.allCases.map(\.rawValue)), not \(name.debugDescription)")
        }
        return target
    }()

    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
        let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
        _ = selectedTarget.run(bytes)
        return 0
    }

    // SwiftPM links an executable module's entry point as `<module>_main` (`--defsym main=Fuzz_main`), so
    // libFuzzer's own `main` is not used: this one hands the command line to libFuzzer's driver.
    // swift-format-ignore: AlwaysUseLowerCamelCase
    @_silgen_name("LLVMFuzzerRunDriver")
    func LLVMFuzzerRunDriver(
        _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
    ) -> CInt

    @_cdecl("Fuzz_main")
    public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
        // CANDLECAST_FUZZ_SEEDS=OUT (with CANDLECAST_FUZZ_DATA=data/): write the seed corpus instead of fuzzing.
        let environment = ProcessInfo.processInfo.environment
        if let out = environment["CANDLECAST_FUZZ_SEEDS"] {
            do {
                let count = try FuzzSeeds.write(
                    dataDirectory: URL(fileURLWithPath: environment["CANDLECAST_FUZZ_DATA"] ?? "data"), to: URL(fileURLWithPath: out))
                print("\(count) seeds written to \(out)")
                return 0
            } catch {
                FileHandle.standardError.write(Data("cannot write the seeds: \(error)\n".utf8))
                return 1
            }
        }
        var count = argc
        var arguments = argv
        return LLVMFuzzerRunDriver(&count, &arguments, fuzzOneInput)
    }
#else
    /// The same targets without libFuzzer:
    ///   Fuzz replay TARGET FILE|DIRECTORY...   runs saved inputs (a crash is a failure)
    ///   Fuzz seeds DATA_DIRECTORY OUT          writes the seed corpus, OUT/<target>/...
    @main
    struct FuzzReplay {
        static func main() throws {
            let arguments = Array(CommandLine.arguments.dropFirst())
            switch arguments.first {
            case "replay" where arguments.count >= 2:
                guard let target = FuzzTarget(rawValue: arguments[1]) else { usage() }
                var count = 0
                var accepted = 0
                for path in arguments.dropFirst(2) {
                    for file in files(at: path) {
                        if target.run(Array(try Data(contentsOf: URL(fileURLWithPath: file)))) { accepted += 1 }
                        count += 1
                    }
                }
                print("\(target.rawValue): \(count) inputs replayed, no crash; \(accepted) got all the way in (accepted)")
            case "seeds" where arguments.count == 3:
                let count = try FuzzSeeds.write(dataDirectory: URL(fileURLWithPath: arguments[1]), to: URL(fileURLWithPath: arguments[2]))
                print("\(count) seeds written to \(arguments[2])")
            default:
                usage()
            }
        }

        static func files(at path: String) -> [String] {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return [] }
            guard isDirectory.boolValue else { return [path] }
            let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            return names.filter { !$0.hasPrefix(".") }.sorted().map { (path as NSString).appendingPathComponent($0) }
        }

        static func usage() -> Never {
            FileHandle.standardError.write(
                Data(
                    """
                    usage: Fuzz replay (\(FuzzTarget.allCases.map(\.rawValue).joined(separator: "|"))) FILE|DIR...
                           Fuzz seeds DATA_DIR OUT_DIR\n
                    """.utf8))
            exit(64)
        }
    }
#endif
