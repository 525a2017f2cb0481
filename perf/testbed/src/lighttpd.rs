//! lighttpd as a backend web server, to show that socket handover is not
//! nginx-specific: stock Debian lighttpd (one process, its own event loop),
//! started with the agent's preload library, serving [`crate::content`] on
//! the VIP :80 and naming itself in `X-Backend` like the nginx backends.

use crate::content;
use crate::error::{BedError, Result};
use crate::process::Proc;
use crate::topology::{Bed, Host};
use crate::{addr, nginx};
use std::time::{Duration, Instant};

/// lighttpd's configuration for backend `host` with files under `dir`.
pub fn config(dir: &std::path::Path, name: &str) -> String {
    let d = dir.display();
    format!(
        "server.document-root = \"{d}/www\"\n\
         server.bind = \"{vip}\"\n\
         server.port = {port}\n\
         server.errorlog = \"{d}/error.log\"\n\
         server.pid-file = \"{d}/lighttpd.pid\"\n\
         server.max-connections = 8000\n\
         server.modules = (\"mod_setenv\")\n\
         setenv.add-response-header = (\"X-Backend\" => \"{name}\")\n\
         mimetype.assign = (\".html\" => \"text/html\", \".css\" => \"text/css\", \
         \".js\" => \"application/javascript\", \".svg\" => \"image/svg+xml\", \
         \"\" => \"application/octet-stream\")\n",
        vip = addr::VIP,
        port = addr::VIP_PORT,
    )
}

/// Writes the site and config of `host` under `<bed dir>/<host>/lighttpd` and
/// starts lighttpd; returns once its VIP listener is converted.
pub fn start_backend(bed: &Bed, host: &Host) -> Result<Proc> {
    let dir = bed.path(&format!("{}/lighttpd", host.name));
    std::fs::create_dir_all(&dir).map_err(|e| BedError::file(&dir, e))?;
    content::write_site(&dir.join("www"), &host.name)?;
    let conf = dir.join("lighttpd.conf");
    std::fs::write(&conf, config(&dir, &host.name)).map_err(|e| BedError::file(&conf, e))?;
    let env = nginx::handover_env(bed, host)?;
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let p = Proc::spawn_env(
        &format!("lighttpd@{}", host.name),
        &host.ns,
        "lighttpd",
        &["-D", "-f", &conf.display().to_string()],
        &env,
        &dir.join("stdout.log"),
    )?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nginx::converted_listener(host)? {
        if Instant::now() > deadline {
            return Err(BedError::Setup(format!(
                "lighttpd on {} did not convert its VIP listener:\n{}\n{}\n{}",
                host.name,
                crate::process::log_tail(&dir.join("error.log"), 4000),
                crate::process::log_tail(&dir.join("stdout.log"), 4000),
                host.run("ss", &["-tanpe"]).unwrap_or_default()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(p)
}
