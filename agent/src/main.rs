fn main() {
    eprintln!("baton-agent: not built yet");
    std::process::exit(2);
}
