// swift-tools-version:6.0
import PackageDescription

/// Candlecast: independent Swift services exchanging AMQP messages through RabbitMQ (rabbitmq-c) and
/// keeping their state in PostgreSQL (libpq). Executables live under Services/, shared libraries under Shared/.
let serviceKit: [Target.Dependency] = ["ServiceKit", "Messaging", "Storage", "Contracts"]

/// The generator writes one `public import` per file whether or not that file uses it; its warnings are not ours.
let generatedCode: [SwiftSetting] = [.unsafeFlags(["-suppress-warnings"])]

let package = Package(
    name: "Candlecast",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "ingestor", targets: ["Ingestor"]),
        .executable(name: "preprocessor", targets: ["Preprocessor"]),
        .executable(name: "trainer", targets: ["Trainer"]),
        .executable(name: "registry", targets: ["Registry"]),
        .executable(name: "predictor", targets: ["Predictor"]),
        .executable(name: "monitor", targets: ["Monitor"]),
        .executable(name: "candlecast", targets: ["Admin"]),
        .executable(name: "fake-kraken", targets: ["FakeKrakenServer"]),
        .library(name: "CandlecastClient", targets: ["CandlecastClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.0.0"..<"5.0.0"),
        // The HTTP contract: types, servers and clients generated from docs/*-openapi.yaml (scripts/openapi-generate.sh).
        .package(url: "https://github.com/apple/swift-openapi-runtime.git", from: "1.8.0"),
        .package(url: "https://github.com/hummingbird-project/swift-openapi-hummingbird.git", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-openapi-async-http-client.git", from: "1.1.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.23.0"),
    ],
    targets: [
        // C bridges: module.modulemap + shim.h, nothing else.
        .systemLibrary(
            name: "CRabbitMQ", path: "Shared/CRabbitMQ", pkgConfig: "librabbitmq",
            providers: [.apt(["librabbitmq-dev"])]),
        .systemLibrary(
            name: "CLibPQ", path: "Shared/CLibPQ", pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]),
        .systemLibrary(
            name: "CBLAS", path: "Shared/CBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),

        .target(
            name: "Messaging",
            dependencies: [
                "CRabbitMQ",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            path: "Shared/Messaging"),
        .target(
            name: "Storage",
            dependencies: [
                "CLibPQ",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            path: "Shared/Storage"),
        .target(name: "Contracts", dependencies: ["Messaging"], path: "Shared/Contracts"),
        .target(name: "KrakenFormat", dependencies: ["Contracts", "Messaging"], path: "Shared/KrakenFormat"),
        .target(
            name: "CandlecastClient", dependencies: ["Contracts", "Messaging", .product(name: "Logging", package: "swift-log")],
            path: "Shared/CandlecastClient"),
        // The LSTM cell's elementwise arithmetic, in C so that it vectorises (one build per vector extension).
        .target(name: "CLSTMCell", path: "Shared/CLSTMCell", cSettings: [.unsafeFlags(["-O3", "-fno-math-errno"])]),
        .target(name: "Forecasting", dependencies: ["CBLAS", "CLSTMCell", "Contracts"], path: "Shared/Forecasting"),
        // Generated from the OpenAPI documents (committed; scripts/openapi-generate.sh --check keeps them in step).
        .target(
            name: "RegistryAPI",
            dependencies: [.product(name: "OpenAPIRuntime", package: "swift-openapi-runtime")],
            path: "Shared/RegistryAPI", exclude: ["openapi-generator-config.yaml"], swiftSettings: generatedCode),
        .target(
            name: "PredictorAPI", dependencies: [.product(name: "OpenAPIRuntime", package: "swift-openapi-runtime")],
            path: "Shared/PredictorAPI", exclude: ["openapi-generator-config.yaml"], swiftSettings: generatedCode),
        .target(
            name: "PreprocessorAPI", dependencies: [.product(name: "OpenAPIRuntime", package: "swift-openapi-runtime")],
            path: "Shared/PreprocessorAPI", exclude: ["openapi-generator-config.yaml"], swiftSettings: generatedCode),
        .target(
            name: "MonitorAPI", dependencies: [.product(name: "OpenAPIRuntime", package: "swift-openapi-runtime")],
            path: "Shared/MonitorAPI", exclude: ["openapi-generator-config.yaml"], swiftSettings: generatedCode),
        .target(
            name: "ServiceKit",
            dependencies: [
                "Messaging", "Storage", "Contracts",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "OpenAPIHummingbird", package: "swift-openapi-hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "OpenAPIAsyncHTTPClient", package: "swift-openapi-async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Shared/ServiceKit"),

        .executableTarget(
            name: "Ingestor",
            dependencies: serviceKit + [
                "KrakenFormat", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            path: "Services/Ingestor"),
        .executableTarget(
            name: "Preprocessor",
            dependencies: serviceKit + ["Forecasting", "PreprocessorAPI", .product(name: "Hummingbird", package: "hummingbird")],
            path: "Services/Preprocessor"),
        .executableTarget(
            name: "Trainer",
            dependencies: serviceKit + ["Forecasting", "RegistryAPI", .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime")],
            path: "Services/Trainer"),
        .executableTarget(
            name: "Registry",
            dependencies: serviceKit + [
                "Forecasting", .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                "RegistryAPI", .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
            ],
            path: "Services/Registry"),
        .executableTarget(
            name: "Predictor",
            dependencies: serviceKit + [
                "Forecasting", .product(name: "Hummingbird", package: "hummingbird"), .product(name: "Crypto", package: "swift-crypto"),
            ]
                + [
                    "RegistryAPI", "PredictorAPI", "PreprocessorAPI", .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                    .product(name: "HTTPTypes", package: "swift-http-types"),
                ],
            path: "Services/Predictor"),
        .executableTarget(
            name: "Admin",
            dependencies: serviceKit + ["CandlecastClient", .product(name: "ArgumentParser", package: "swift-argument-parser")]
                + [
                    "RegistryAPI", "PredictorAPI", "PreprocessorAPI", .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                    .product(name: "HTTPTypes", package: "swift-http-types"),
                ],
            path: "Services/Admin"),
        .executableTarget(
            name: "Monitor",
            dependencies: serviceKit + [
                "Forecasting", .product(name: "Hummingbird", package: "hummingbird"), .product(name: "Metrics", package: "swift-metrics"),
            ]
                + ["RegistryAPI", "MonitorAPI", .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime")],
            path: "Services/Monitor"),

        .executableTarget(name: "LSTMBench", dependencies: ["Forecasting", "KrakenFormat"], path: "Benchmarks/LSTMBench"),
        .executableTarget(name: "ForecastEval", dependencies: ["Forecasting", "KrakenFormat"], path: "Benchmarks/ForecastEval"),
        .executableTarget(name: "blas-kernel", dependencies: ["Forecasting"], path: "Benchmarks/BLASKernel"),
        .executableTarget(
            name: "ForecastLatencyBench", dependencies: ["Messaging", "Contracts", .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/ForecastLatencyBench"),
        .executableTarget(
            name: "BrokerBench",
            dependencies: ["Messaging", .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/BrokerBench"),

        .testTarget(name: "ForecastingTests", dependencies: ["Forecasting", "CLSTMCell", "KrakenFormat"], path: "Tests/ForecastingTests"),
        .testTarget(name: "MessagingTests", dependencies: ["Messaging", "Contracts", "TestSupport"], path: "Tests/MessagingTests"),
        .testTarget(name: "StorageTests", dependencies: ["Storage", "TestSupport"], path: "Tests/StorageTests"),
        .testTarget(name: "ServiceKitTests", dependencies: ["ServiceKit", "TestSupport"], path: "Tests/ServiceKitTests"),
        .testTarget(
            name: "ContractsTests", dependencies: ["CandlecastClient", "Contracts", "Messaging", "TestSupport"],
            path: "Tests/ContractsTests"),
        .testTarget(
            name: "SystemTests", dependencies: ["TestSupport", "CandlecastClient", "Contracts", "Messaging", "Storage", "KrakenFake"],
            path: "Tests/SystemTests"),
        .target(
            name: "KrakenFake", dependencies: ["KrakenFormat", .product(name: "Hummingbird", package: "hummingbird")],
            path: "Tests/KrakenFake"),
        .executableTarget(
            name: "FakeKrakenServer", dependencies: ["KrakenFake", .product(name: "Hummingbird", package: "hummingbird")],
            path: "Tests/FakeKrakenServer"),
        .testTarget(
            name: "IngestorTests", dependencies: ["Ingestor", "KrakenFake", "TestSupport", "ServiceKit", "Contracts"],
            path: "Tests/IngestorTests"),
        .testTarget(
            name: "PreprocessorTests",
            dependencies: ["Preprocessor", "Ingestor", "KrakenFake", "TestSupport", "ServiceKit", "Contracts", "Forecasting"],
            path: "Tests/PreprocessorTests"),
        .testTarget(
            name: "RegistryTests",
            dependencies: [
                "Registry", "Trainer", "Preprocessor", "Ingestor", "TestSupport", "ServiceKit", "Contracts", "Forecasting",
                .product(name: "Hummingbird", package: "hummingbird"), .product(name: "Crypto", package: "swift-crypto"),
                "RegistryAPI", .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
            ],
            path: "Tests/RegistryTests"),
        .testTarget(
            name: "MonitorTests",
            dependencies: [
                "Monitor", "Ingestor", "KrakenFake", "TestSupport", "ServiceKit", "Contracts", "Messaging", "Storage", "Forecasting",
            ],
            path: "Tests/MonitorTests"),
        .testTarget(
            name: "PredictorTests",
            dependencies: [
                "Predictor", "Registry", "Preprocessor", "Ingestor", "KrakenFake", "TestSupport", "ServiceKit", "Contracts", "Forecasting",
                "PredictorAPI", .product(name: "Hummingbird", package: "hummingbird"),
            ],
            path: "Tests/PredictorTests"),
        .target(
            name: "FuzzTargets", dependencies: ["KrakenFormat", "Contracts", "Messaging", "TestSupport", "Forecasting", "Storage"],
            path: "Tests/FuzzTargets"),
        .executableTarget(name: "Fuzz", dependencies: ["FuzzTargets"], path: "Tests/Fuzz"),
        .testTarget(
            name: "FuzzTests", dependencies: ["FuzzTargets", "KrakenFormat", "Contracts", "TestSupport", "Ingestor"],
            path: "Tests/FuzzTests"),
        .target(
            name: "TestSupport",
            dependencies: ["Messaging", "Storage", "Contracts", .product(name: "Logging", package: "swift-log")],
            path: "Tests/TestSupport"),
    ],
    swiftLanguageModes: [.v6]
)
