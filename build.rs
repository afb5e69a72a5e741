//! Generates the Envoy external-authorization messages and service from the
//! vendored protos under proto/ with protox, a protobuf compiler written in
//! Rust: no `protoc` is needed on the build machine. The integration tests'
//! own gRPC service (tests/proto) is generated alongside; only the tests
//! include it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/envoy/service/auth/v3/external_auth.proto"];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    // Absent from a source tree without the tests (a crate package).
    let test_proto = "tests/proto/echo.proto";
    if std::path::Path::new(test_proto).exists() {
        println!("cargo:rerun-if-changed=tests/proto");
        let test_descriptors = protox::compile([test_proto], ["tests/proto"])?;
        tonic_prost_build::configure()
            .build_server(true)
            .build_client(true)
            .compile_fds(test_descriptors)?;
    }
    Ok(())
}
