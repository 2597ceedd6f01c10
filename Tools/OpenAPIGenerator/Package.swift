// swift-tools-version:6.0
import PackageDescription

/// Builds Apple's swift-openapi-generator command line tool, which scripts/openapi-generate.sh runs to turn the
/// OpenAPI documents in docs/ into the committed Swift code under Shared/*API/Generated. A package of its own so the
/// generator's dependencies (OpenAPIKit, Yams) never enter the services' build.
let package = Package(
    name: "OpenAPIGeneratorTool",
    dependencies: [
        .package(url: "https://github.com/apple/swift-openapi-generator.git", exact: "1.14.3")
    ],
    targets: []
)
