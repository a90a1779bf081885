# Load balancer: public ALB in the public subnets, one target group on the
# instances' port 8080.
#
# Without a certificate, port 80 forwards to the service. With one, port 443
# terminates TLS (TLS 1.2/1.3 policy) and port 80 only redirects to HTTPS.

locals {
  public_url = var.public_url != "" ? var.public_url : "${local.https_enabled ? "https" : "http"}://${aws_lb.main.dns_name}"
}

resource "aws_lb" "main" {
  name               = "${local.name}-alb"
  load_balancer_type = "application"
  internal           = false
  subnets            = aws_subnet.public[*].id
  security_groups    = [aws_security_group.alb.id]

  drop_invalid_header_fields = true
  desync_mitigation_mode     = "defensive"
  enable_deletion_protection = var.deletion_protection
  idle_timeout               = 60

  dynamic "access_logs" {
    for_each = var.access_logs_bucket != "" ? [var.access_logs_bucket] : []
    content {
      bucket  = access_logs.value
      prefix  = local.name
      enabled = true
    }
  }

  tags = { Name = "${local.name}-alb" }
}

resource "aws_wafv2_web_acl_association" "alb" {
  count = var.web_acl_arn != "" ? 1 : 0

  resource_arn = aws_lb.main.arn
  web_acl_arn  = var.web_acl_arn
}

resource "aws_lb_target_group" "app" {
  name_prefix = substr(var.name, 0, 6)
  port        = local.app_port
  protocol    = "HTTP"
  target_type = "instance"
  vpc_id      = aws_vpc.main.id

  # How long a deregistering instance keeps its in-flight requests; the service
  # is told to drain for the same time (SHORTENER_SHUTDOWN_TIMEOUT).
  deregistration_delay = var.drain_seconds

  health_check {
    enabled             = true
    protocol            = "HTTP"
    port                = "traffic-port"
    path                = "/readyz"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = { Name = "${local.name}-app" }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.main.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type             = local.https_enabled ? "redirect" : "forward"
    target_group_arn = local.https_enabled ? null : aws_lb_target_group.app.arn

    dynamic "redirect" {
      for_each = local.https_enabled ? [1] : []
      content {
        protocol    = "HTTPS"
        port        = "443"
        status_code = "HTTP_301"
      }
    }
  }
}

resource "aws_lb_listener" "https" {
  count = local.https_enabled ? 1 : 0

  load_balancer_arn = aws_lb.main.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.app.arn
  }
}
