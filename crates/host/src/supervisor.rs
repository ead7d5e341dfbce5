//! `ServiceSupervisor`: keeps one service alive for the life of its
//! workload. Every incarnation gets a fresh store and instance (a trapped
//! instance is never re-entered); restarts follow the service's policy with
//! exponential backoff.

use crate::manifest::{RestartPolicy, Service};
use crate::output::{LogOutput, Origin, OutputLimiter};
use crate::run::Prepared;
use crate::state::HostState;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::Instrument;
use wasi_sockets_virt::{Policy, PortOwner, SocketsCtx, VirtualNetwork};

/// A ready incarnation that lived this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceState {
    /// Instantiated, not yet listening on all its ports.
    Starting,
    /// Listening on all its ports.
    Ready,
    /// Waiting before the next restart.
    BackingOff,
    /// Ended and will not be restarted (exit code 0 under on-failure/never).
    Exited,
    /// Ended abnormally and will not be restarted.
    Failed,
}

impl fmt::Display for ServiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            ServiceState::Starting => "starting",
            ServiceState::Ready => "ready",
            ServiceState::BackingOff => "backing-off",
            ServiceState::Exited => "exited",
            ServiceState::Failed => "failed",
        })
    }
}

/// What the rest of the host can see of a supervised service.
#[derive(Clone, Debug)]
pub struct ServiceStatus {
    pub state: ServiceState,
    pub restarts: u32,
    /// Why the last incarnation ended.
    pub last_exit: Option<String>,
    /// When the running incarnation started (`None` while none runs).
    pub since: Option<Instant>,
}

pub struct ServiceSupervisor {
    pub workload: String,
    pub service: Service,
    status: Mutex<ServiceStatus>,
    /// The service's log-line rate limit, across incarnations.
    output: Arc<OutputLimiter>,
}

impl ServiceSupervisor {
    pub fn new(workload: String, service: Service) -> Arc<Self> {
        Arc::new(ServiceSupervisor {
            status: Mutex::new(ServiceStatus {
                state: ServiceState::Starting,
                restarts: 0,
                last_exit: None,
                since: None,
            }),
            output: OutputLimiter::new(&workload, &service.name),
            workload,
            service,
        })
    }

    pub fn status(&self) -> ServiceStatus {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut ServiceStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Runs the service until it is done for good (or the task is aborted,
    /// which drops the running instance).
    pub async fn supervise(self: Arc<Self>, prepared: Arc<Prepared>, network: VirtualNetwork, port_owner: PortOwner) {
        let svc = &self.service;
        let policy = Arc::new(svc.policy.clone());
        // Ready = listening on all declared ports (on the loopback).
        let ports: Vec<SocketAddr> = svc
            .ports
            .iter()
            .map(|&port| SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port))
            .collect();
        let mut backoff = svc.backoff_initial;
        // Restarts since the service last ran stably; `max_restarts` limits
        // these, so a service that fails once a day is not given up on.
        let mut consecutive = 0;
        loop {
            self.update(|s| {
                s.state = ServiceState::Starting;
                s.since = Some(Instant::now());
            });
            let started = Instant::now();
            let mut ready_since = None;
            let (namespace, name) = self.workload.split_once('/').unwrap_or(("default", &self.workload));
            let span = tracing::info_span!("service", "service.name" = %svc.name, "workload.name" = name,
                "workload.namespace" = namespace, "loophost.restarts" = self.status().restarts);
            // A mount that can no longer be opened fails this incarnation
            // like a trap would: logged, restarted with backoff.
            let run = async {
                let state = self.instance_state(&prepared, &network, policy.clone(), port_owner)?;
                prepared.run_state(state).await
            }
            .instrument(span.clone());
            tokio::pin!(run);
            let listening = network.wait_listening(&ports);
            tokio::pin!(listening);
            let outcome = loop {
                tokio::select! {
                    outcome = &mut run => break outcome,
                    _ = &mut listening, if ready_since.is_none() => {
                        ready_since = Some(Instant::now());
                        self.update(|s| s.state = ServiceState::Ready);
                        crate::telemetry::in_span(&span, || tracing::info!(workload = %self.workload, service = %svc.name,
                            after_ms = started.elapsed().as_millis() as u64, "service ready"));
                    }
                }
            };
            let (failed, cause) = match &outcome {
                Ok(0) => (false, "exited with code 0".to_string()),
                Ok(code) => (true, format!("exited with code {code}")),
                Err(err) => (true, crate::run::one_line(err)),
            };
            self.update(|s| {
                s.last_exit = Some(cause.clone());
                s.since = None;
            });
            // No instance could be had (the pool is full): the service did
            // not run, so it did not fail; try again, and count nothing.
            if let Err(err) = &outcome
                && err.chain().any(|e| e.is::<wasmtime::PoolConcurrencyLimitError>())
            {
                tracing::warn!(workload = %self.workload, service = %svc.name, %cause,
                    "no instance capacity for the service; retrying");
                self.update(|s| s.state = ServiceState::BackingOff);
                tokio::time::sleep(svc.backoff_initial).await;
                continue;
            }
            let restart = match svc.restart {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => failed,
                RestartPolicy::Never => false,
            };
            let restarts = self.status().restarts;
            if ready_since.is_some_and(|t| t.elapsed() >= STABLE_AFTER) {
                consecutive = 0;
            }
            if !restart || consecutive >= svc.max_restarts {
                let state = if failed {
                    ServiceState::Failed
                } else {
                    ServiceState::Exited
                };
                self.update(|s| s.state = state);
                if failed {
                    tracing::error!(workload = %self.workload, service = %svc.name, %cause, restarts, "service stopped for good");
                } else {
                    tracing::info!(workload = %self.workload, service = %svc.name, %cause, "service exited");
                }
                return;
            }
            if consecutive == 0 {
                backoff = svc.backoff_initial;
            }
            let restart_span = tracing::info_span!("service.restart", "service.name" = %svc.name, "workload.name" = name,
                "workload.namespace" = namespace, "loophost.restart.cause" = %cause, "loophost.restarts" = restarts + 1,
                "loophost.backoff_ms" = backoff.as_millis() as u64);
            crate::telemetry::in_span(&restart_span, || {
                tracing::warn!(workload = %self.workload, service = %svc.name, %cause, restart = restarts + 1,
                    backoff_ms = backoff.as_millis() as u64, "service restarting");
            });
            crate::metrics::instruments().service_restarts.add(
                1,
                &[
                    opentelemetry::KeyValue::new("workload.name", self.workload.clone()),
                    opentelemetry::KeyValue::new("service.name", svc.name.clone()),
                ],
            );
            self.update(|s| s.state = ServiceState::BackingOff);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(svc.backoff_max);
            self.update(|s| s.restarts += 1);
            consecutive += 1;
        }
    }

    fn instance_state(
        &self,
        prepared: &Prepared,
        network: &VirtualNetwork,
        policy: Arc<Policy>,
        port_owner: PortOwner,
    ) -> anyhow::Result<HostState> {
        let origin = |stream| Origin {
            workload: self.workload.clone(),
            name: self.service.name.clone(),
            stream,
            limiter: self.output.clone(),
        };
        // The sockets come first: the guest's output is attributed to the
        // connection it is serving (see `ConnectionContext`).
        let sockets = SocketsCtx::with_shared_policy(network.clone(), policy).with_port_owner(port_owner);
        let context = sockets.connection_context();
        let mut wasi = prepared.wasi();
        wasi.envs(&self.service.env)
            .stdout(LogOutput::new(origin("stdout")).with_connection_context(context.clone()))
            .stderr(LogOutput::new(origin("stderr")).with_connection_context(context));
        crate::mounts::preopen(&mut wasi, &self.service.mounts)?;
        Ok(HostState::from_parts(wasi.build(), sockets).with_memory_limit(self.service.memory_limit))
    }
}
