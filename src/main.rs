fn main() -> std::process::ExitCode {
    ota_relay::cli::main()
}
